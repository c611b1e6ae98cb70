"""Source templates: parsed once, filled alike in Python and (see test_export) in the graph."""

import re

import pytest

from transformer_tf.data.templates import fill_template, template_fields, template_parts


def test_fields_in_order_of_first_use_and_literal_braces():
    template = "Q: {question} {{verbatim}} C: {context} (again: {question})"
    assert template_fields(template) == ["question", "context"]
    filled = fill_template(template, {"question": "Who?", "context": "A fox."})
    assert filled == "Q: Who? {verbatim} C: A fox. (again: Who?)"


@pytest.mark.parametrize(
    "template, message",
    [
        ("{question", "expected '}'"),
        ("question}", "Single '}'"),
        ("{0}", "'{0}' is not a plain field name"),
        ("{}", "'{}' is not a plain field name"),
        ("{a.b}", "'{a.b}' is not a plain field name"),
        ("{a[0]}", "'{a[0]}' is not a plain field name"),
        ("{a!r}", "'{a!r}' is not a plain field name"),
        ("{a:>10}", "'{a:>10}' is not a plain field name"),
    ],
)
def test_anything_but_plain_field_names_is_refused_in_words(template, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        template_parts(template)
