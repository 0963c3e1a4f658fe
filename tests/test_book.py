"""The website: every page in the table of contents exists, chapters show library code by
`literalinclude` (never a pasted copy) and teach what the exercises ask for in algorithm
boxes (tests/test_answer_leaks.py: never its code), and the book builds with no warning."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, toc_pages


def _page(stem: str) -> Path:
    for ext in (".md", ".ipynb"):
        if (REPO / (stem + ext)).is_file():
            return REPO / (stem + ext)
    raise FileNotFoundError(stem)


CHAPTERS = [f for f in toc_pages() if f.startswith("book/") and re.match(r"book/\d\d-", f)]


def test_every_toc_entry_exists():
    missing = []
    for stem in toc_pages():
        try:
            _page(stem)
        except FileNotFoundError:
            missing.append(stem)
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"


def test_every_assignment_is_in_the_exercises_part():
    listed = set(toc_pages())
    for asg in sorted(p.name for p in (REPO / "notebooks").iterdir() if p.is_dir()):
        assert f"notebooks/{asg}/{asg}" in listed, f"notebooks/{asg} is not under Exercises in _toc.yml"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_literalincludes_point_at_real_objects(chapter):
    text = _page(chapter).read_text()
    blocks = re.findall(r"```\{literalinclude\}\s+(\S+)\n((?::\w+:.*\n)*)", text)
    # Code an exercise asks for is taught in a {prf:algorithm} box instead (DESIGN.md, "Book"),
    # so a chapter whose library code is all graded shows none; it must then have boxes.
    assert blocks or "```{prf:algorithm}" in text, f"{chapter} shows no library code and no algorithm box"
    for rel, options in blocks:
        path = (_page(chapter).parent / rel).resolve()
        assert path.is_file(), f"{chapter}: literalinclude of missing file {rel}"
        m = re.search(r":pyobject:\s*(\S+)", options)
        if m:
            tree = ast.parse(path.read_text())
            names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            assert m.group(1).split(".")[-1] in names, f"{chapter}: {rel} has no {m.group(1)}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_algorithm_boxes_are_labelled_and_references_resolve(chapter):
    """Every chapter teaches its exercises' algorithms in labelled {prf:algorithm} boxes, and
    every {prf:ref} names a box of some chapter (sphinx-proof labels are global)."""
    text = _page(chapter).read_text()
    boxes = re.findall(r"```\{prf:algorithm\}[^\n]*\n:label:\s*(\S+)", text)
    assert boxes, f"{chapter} has no labelled {{prf:algorithm}} box"
    labels = {l for c in CHAPTERS for l in re.findall(r"```\{prf:algorithm\}[^\n]*\n:label:\s*(\S+)", _page(c).read_text())}
    unknown = set(re.findall(r"\{prf:ref\}`([^`]+)`", text)) - labels
    assert not unknown, f"{chapter} references unknown algorithm boxes {sorted(unknown)}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_links_its_assignment(chapter):
    number = Path(chapter).name[:2]
    assert re.search(rf"notebooks/{number}-[\w-]+/{number}-", _page(chapter).read_text()), (
        f"{chapter} does not link its assignment notebook"
    )


@pytest.mark.slow
def test_book_builds_without_warnings(book_build):
    """`make book`'s command: any warning, broken reference or failing cell fails it."""
    proc = book_build
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    html = REPO / "_build" / "html"
    for stem in toc_pages():
        assert (html / f"{stem}.html").is_file(), f"{stem}.html was not built"
    for chapter in CHAPTERS:
        page = (html / f"{chapter}.html").read_text()
        assert "<img" in page, f"{chapter} has no figure"
        assert "Traceback" not in page, f"{chapter} shows a traceback"


# --- citations, equations, notation, exercise pages, launch switch (fast: no build) ---

BIB = REPO / "book" / "references.bib"
CITE = re.compile(r"\{cite(?::\w+)?\}`([^`]+)`")
EQ_LABEL = re.compile(r"^\$\$\s*\((eq-[\w-]+)\)\s*$", re.M)
EQ_REF = re.compile(r"\{eq\}`([^`]+)`")


def _bib_keys() -> list[str]:
    return re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(), re.M)


def _cited(text: str) -> set[str]:
    return {k.strip() for group in CITE.findall(text) for k in group.split(",")}


def _book_pages() -> list[Path]:
    return sorted((REPO / "book").glob("*.md"))


def test_bib_keys_are_unique_and_entries_complete():
    keys = _bib_keys()
    assert keys, "book/references.bib has no entries"
    assert len(keys) == len(set(keys)), f"duplicate keys in references.bib: {sorted(k for k in keys if keys.count(k) > 1)}"
    for entry in re.split(r"\n(?=@)", BIB.read_text())[1:]:
        key = re.match(r"@\w+\{([^,\s]+),", entry).group(1)
        for field in ("author", "title", "year"):
            assert re.search(rf"^\s*{field}\s*=", entry, re.M), f"references.bib: {key} has no {field}"
        arxiv = re.search(r"eprint\s*=\s*\{([^}]*)\}", entry)
        if arxiv:
            assert re.fullmatch(r"\d{4}\.\d{4,5}", arxiv.group(1)), f"{key}: malformed arXiv id {arxiv.group(1)}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_cites_known_papers(chapter):
    cited = _cited(_page(chapter).read_text())
    assert cited, f"{chapter} cites no paper with {{cite:t}}/{{cite:p}}"
    unknown = cited - set(_bib_keys())
    assert not unknown, f"{chapter} cites keys missing from book/references.bib: {sorted(unknown)}"


def test_every_bib_entry_is_cited_and_bibliography_is_in_toc():
    cited = set().union(*(_cited(p.read_text()) for p in _book_pages()))
    uncited = set(_bib_keys()) - cited
    assert not uncited, f"references.bib entries cited nowhere in book/: {sorted(uncited)}"
    pages = [_page(stem) for stem in toc_pages()]
    assert any("```{bibliography}" in p.read_text() for p in pages if p.suffix == ".md"), (
        "no page in _toc.yml holds the {bibliography} directive"
    )
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config.get("bibtex_bibfiles") == ["book/references.bib"]


def test_papers_of_each_topic_are_cited_where_used():
    expected = {
        "01": {"rezende2015variational"}, "02": {"rezende2015variational"},
        "03": {"papamakarios2017masked", "kingma2016improved", "germain2015made"},
        "04": {"dinh2014nice", "dinh2016density", "kingma2018glow"},
        "05": {"ho2019flow", "theis2016note"},
        "06": {"hyvarinen2005estimation", "song2019sliced", "vincent2011connection"},
        "07": {"song2019generative"}, "08": {"song2021score", "anderson1982reverse"},
        "09": {"song2021score", "chen2018neural", "grathwohl2019ffjord"},
        "10": {"durkan2019neural", "kingma2018glow"},
        "11": {"lipman2023flow", "liu2023flow", "chen2018neural"},
        "12": {"ho2020denoising", "song2021denoising", "ho2022classifier", "efron2011tweedie"},
    }
    for chapter in CHAPTERS:
        missing = expected[Path(chapter).name[:2]] - _cited(_page(chapter).read_text())
        assert not missing, f"{chapter} does not cite {sorted(missing)}"


def test_no_plain_text_citations_left():
    for page in _book_pages():
        prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        prose = re.sub(r"\s+", " ", prose)  # a citation broken over two lines is still one
        hits = re.findall(r"[A-Z][a-z]+(?: et al\.| and [A-Z][a-z]+)? \(?(?:19|20)\d\d[,)]", prose)
        assert not hits, f"{page.name}: plain-text citations {hits}; use {{cite:t}}/{{cite:p}}"


def test_equation_labels_unique_and_references_resolve():
    labels: dict[str, str] = {}
    for page in _book_pages():
        for label in EQ_LABEL.findall(page.read_text()):
            assert label not in labels, f"equation label {label} in both {labels[label]} and {page.name}"
            labels[label] = page.name
    for key in ("eq-cov", "eq-planar-ladj", "eq-maf", "eq-iaf", "eq-coupling", "eq-coupling-det", "eq-bpd",
                "eq-esm", "eq-ssm", "eq-dsm", "eq-langevin", "eq-reverse", "eq-pf", "eq-loglik"):
        assert key in labels, f"key equation {key} is not labelled"
    cross = 0
    for page in _book_pages():
        for ref in EQ_REF.findall(page.read_text()):
            assert ref in labels, f"{page.name} references unknown equation {ref}"
            cross += labels[ref] != page.name
    assert cross >= 5, f"only {cross} cross-chapter equation references"


def test_notation_page_is_in_toc_and_linked_from_intro():
    files = toc_pages()
    assert "book/notation" in files, "book/notation is not in _toc.yml"
    assert files.index("book/notation") < min(files.index(c) for c in CHAPTERS), "notation must come before the chapters"
    assert "{doc}`notation`" in (REPO / "book" / "intro.md").read_text(), "intro.md does not link the notation page"
    text = (REPO / "book" / "notation.md").read_text()
    for symbol in ("p_Z", "s_\\theta", "\\beta(t)", "g(t)", "NFE", "bits/dim", "ladj"):
        assert symbol in text, f"notation page does not define {symbol}"


def _intro_cell(stem: str):
    import nbformat

    nb = nbformat.read(REPO / f"{stem}.ipynb", as_version=4)
    return next(c for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("stem", [f for f in toc_pages() if f.startswith("notebooks/")])
def test_exercise_intro_links_its_chapter_and_says_how_to_open_it(stem):
    source = _intro_cell(stem).source
    asg = Path(stem).name
    links = re.findall(r"\]\((\.\./\.\./book/[\w-]+\.md)\)", source)
    chapters = [l for l in links if re.search(rf"/{asg[:2]}-", l)]
    assert chapters, f"{stem}: the intro does not link its chapter ../../book/{asg[:2]}-*.md"
    for link in links:
        assert (REPO / stem).parent.joinpath(link).resolve().is_file(), f"{stem}: broken link {link}"
    assert f"notebooks/{asg}/{asg}.ipynb" in source and "download" in source.lower(), (
        f"{stem}: the intro does not say how to download or open the notebook"
    )


def test_launch_buttons_have_one_switch_and_are_off_by_default():
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    launch, repo = config["launch_buttons"], config["repository"]
    for key in ("notebook_interface", "jupyterhub_url", "binderhub_url", "colab_url"):
        assert key in launch, f"_config.yml launch_buttons lacks {key}"
    assert launch["notebook_interface"] in ("jupyterlab", "classic")
    assert "url" in repo and "branch" in repo, "_config.yml repository needs url and branch for launch links"
    # No invented service or repository is published: the switch is off until an instructor fills it in.
    assert not any(launch[k] for k in ("jupyterhub_url", "binderhub_url", "colab_url")) or repo["url"], (
        "a launch service is set but repository.url is empty: the theme would make no links"
    )
    text = (REPO / "_config.yml").read_text()
    assert re.search(r"#.*repository\.url", text), "_config.yml does not document how to turn on launch buttons"


def test_ipynb_download_extension_is_importable():
    sys.path.insert(0, str(REPO / "book" / "_ext"))
    try:
        import ipynb_download
    finally:
        sys.path.pop(0)
    assert callable(ipynb_download.setup)
