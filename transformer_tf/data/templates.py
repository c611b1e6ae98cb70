"""Source templates: how a record's fields become the one source string the model reads.

A template is a Python format string of plain field names, `"question: {question} context:
{context}"`. Training and evaluation fill it in Python from JSON records; an exported model
fills it in its graph from named string inputs (`inference/export.py`, from the same
`template_parts`), so both read the same text. Pure Python: configs are checked with it
before TensorFlow loads.
"""

import string


def template_parts(template: str) -> list[tuple[str, str | None]]:
    """(literal text, field name or None) pieces of `template`, in order.

    Raises ValueError, in words, for braces that do not pair and for anything but a plain
    field name inside them.

    >>> template_parts("question: {question} context: {context}")
    [('question: ', 'question'), (' context: ', 'context')]
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"{err} (write a literal brace as {{{{ or }}}})") from None
    for _, name, spec, conversion in parts:
        if name is not None and not (name.isidentifier() and not spec and not conversion):
            written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"'{{{written}}}' is not a plain field name like {{question}}")
    return [(literal, name) for literal, name, _, _ in parts]


def template_fields(template: str) -> list[str]:
    """The field names `template` uses, each once, in order of first use.

    >>> template_fields("{a} and {b}, {a}")
    ['a', 'b']
    """
    names = [name for _, name in template_parts(template) if name is not None]
    return list(dict.fromkeys(names))


def fill_template(template: str, fields: dict[str, str]) -> str:
    """`template` with each `{name}` replaced by `fields[name]` (Python strings).

    >>> fill_template("q: {question}", {"question": "Who?"})
    'q: Who?'
    """
    parts = template_parts(template)
    return "".join(literal + (fields[name] if name else "") for literal, name in parts)
