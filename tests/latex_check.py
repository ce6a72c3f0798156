"""Compile a LaTeX table body with pdflatex (booktabs), as a paper would include it."""
import subprocess
from pathlib import Path

PREAMBLE = ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
            "\\begin{document}\n")


def compile_latex(tex: str, folder: Path) -> Path:
    """The PDF built from `tex`; fails the test with pdflatex's log tail if it does not compile."""
    doc = Path(folder) / "effects.tex"
    doc.write_text(PREAMBLE + tex + "\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    return doc.with_suffix(".pdf")
