"""The notebooks run top to bottom (with small settings), and are committed without outputs."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize("name", ["quickstart", "attention"])
def test_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_notebooks_run_top_to_bottom(tmp_path, monkeypatch):
    # The attention notebook reuses the model the quickstart notebook trained.
    monkeypatch.setenv("NOTEBOOK_STEPS", "100")
    monkeypatch.setenv("NOTEBOOK_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    outputs = {}
    for name in ("quickstart", "attention"):
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        NotebookClient(
            notebook,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        ).execute()
        outputs[name] = [
            output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
        ]
    text = "".join(o.get("text", "") for o in outputs["quickstart"])
    assert "test BLEU" in text and "log-probability" in text
    assert (tmp_path / "run" / "export" / "saved_model.pb").is_file()
    images = [o for o in outputs["attention"] if "image/png" in o.get("data", {})]
    assert len(images) == 2  # encoder-decoder and encoder self-attention figures
