"""The benchmarks' published files: where each lives, fetched once (``azr eval --download``) into
the azr cache, pinned to a revision, and found there by later evaluations.

A download goes to ``<azr cache>/eval-data/<suite>/<commit>/`` with ``SOURCE.json`` beside the
files (repository, the revision asked for, the commit it resolved to, each file's sha256), and
``<azr cache>/eval-data/<suite>/CURRENT`` names that commit: a later ``azr eval`` without ``--data``
reads that copy, whatever the repository's main branch has become since. Where :data:`PUBLISHED`
pins a commit, that commit is fetched; where it names a branch (no commit was checked from here),
the branch is resolved to its commit at download time and *that* commit is what is kept, recorded
and reused (``--revision`` pins another).

Hugging Face datasets are fetched with ``huggingface_hub``; EvalPlus publishes its files as GitHub
release assets, fetched over HTTPS at a release tag.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.errors import EvalError
from stages.rundir.jsonl import read_json, write_json


@dataclass(frozen=True)
class Published:
    repo: str
    """``owner/name`` of a Hugging Face dataset, or a GitHub repository for ``kind == "github"``."""
    files: tuple[str, ...]
    revision: str
    """A commit (pinned), a branch (resolved to its commit when downloaded) or a release tag."""
    kind: str = "hf"
    """``hf`` (a Hugging Face dataset repository) or ``github`` (release assets at tag ``revision``)."""
    data: str = ""
    """What --data then points at, relative to the download folder (default: the first file)."""


PUBLISHED: dict[str, Published] = {
    "humaneval-plus": Published("evalplus/humanevalplus_release", ("HumanEvalPlus.jsonl.gz",), "v0.1.10",
                                kind="github"),
    "mbpp-plus": Published("evalplus/mbppplus_release", ("MbppPlus.jsonl.gz",), "v0.2.0", kind="github"),
    # release_v5 (the paper's LCB v1-5): the first five release files; --data takes their folder
    "livecodebench": Published("livecodebench/code_generation_lite",
                               ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl"),
                               "main", data="."),
    "math500": Published("HuggingFaceH4/MATH-500", ("test.jsonl",), "6e4ed1a2a79af7d8630a6b768ec859cb5af4d3be"),
    "aime24": Published("math-ai/aime24", ("test.jsonl",), "main"),
    "aime25": Published("math-ai/aime25", ("test.jsonl",), "563bb8404243c5f09de6ec262f2db674fe5bce9b"),
    "amc23": Published("math-ai/amc23", ("test.jsonl",), "main"),
    "minerva": Published("math-ai/minervamath", ("test.jsonl",), "main"),
    "olympiadbench": Published("math-ai/olympiadbench", ("test.jsonl",), "main"),
}
"""Where each suite's published files are. ``cruxeval``/``mbpp``/``dev`` read --data only."""


def root() -> Path:
    from stages.model.builtins import cache_dir

    return Path(cache_dir()) / "eval-data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def local_copy(suite: str) -> Path | None:
    """What --data means for `suite` when it was downloaded, else None."""
    pub = PUBLISHED.get(suite)
    current = root() / suite / "CURRENT"
    if pub is None or not current.is_file():
        return None
    folder = root() / suite / current.read_text().strip()
    if not (folder / "SOURCE.json").is_file():
        return None
    return folder / (pub.data or pub.files[0])


def source_of(data: Path | None) -> dict[str, Any] | None:
    """The SOURCE.json of a downloaded copy that `data` points into, for the result file."""
    if data is None:
        return None
    p = Path(data).resolve()
    for folder in (p, *p.parents):
        if (folder / "SOURCE.json").is_file():
            src = read_json(folder / "SOURCE.json")
            return src if isinstance(src, dict) else None
        if folder == root():
            break
    return None


def download(suite: str, revision: str | None = None) -> Path:
    """Fetch `suite`'s published files (network); returns what --data then is. Idempotent: a
    revision already fetched is not fetched again."""
    pub = PUBLISHED.get(suite)
    if pub is None:
        fetchable = ", ".join(PUBLISHED)
        raise EvalError(f"suite '{suite}' has no published files to download (suites that do: {fetchable})")
    rev = revision or pub.revision
    if pub.kind == "github":
        commit = rev  # a release tag: its assets do not move
        folder = root() / suite / commit
        if not (folder / "SOURCE.json").is_file():
            _fetch_github(pub, rev, folder)
    else:
        commit = _resolve_hf(pub, rev)
        folder = root() / suite / commit
        if not (folder / "SOURCE.json").is_file():
            _fetch_hf(pub, commit, folder)
    if not (folder / "SOURCE.json").is_file():
        write_json(folder / "SOURCE.json", {
            "suite": suite, "repo": pub.repo, "kind": pub.kind, "revision": rev, "commit": commit,
            "files": {f: _sha256(folder / f) for f in pub.files},
        })
    (root() / suite).mkdir(parents=True, exist_ok=True)
    tmp = root() / suite / ".CURRENT.tmp"
    tmp.write_text(commit + "\n")
    tmp.replace(root() / suite / "CURRENT")
    return folder / (pub.data or pub.files[0])


def _resolve_hf(pub: Published, rev: str) -> str:
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
        return rev
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(pub.repo, revision=rev).sha
    except Exception as e:  # offline, unknown repo or revision: one line
        raise EvalError(f"cannot resolve {pub.repo}@{rev} on the Hugging Face Hub ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); pass --data FILE instead") from None
    if not sha:
        raise EvalError(f"the Hub gave no commit for {pub.repo}@{rev}")
    return str(sha)


def _fetch_hf(pub: Published, commit: str, folder: Path) -> None:
    from huggingface_hub import hf_hub_download

    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        for name in pub.files:
            got = Path(hf_hub_download(pub.repo, name, repo_type="dataset", revision=commit,
                                       cache_dir=root() / ".hub"))
            shutil.copyfile(got, part / name)
    except Exception as e:
        shutil.rmtree(part, ignore_errors=True)
        raise EvalError(f"cannot download {pub.repo}@{commit} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); pass --data FILE instead") from None
    shutil.rmtree(folder, ignore_errors=True)
    part.replace(folder)


def _fetch_github(pub: Published, tag: str, folder: Path) -> None:
    import urllib.request

    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        for name in pub.files:
            url = f"https://github.com/{pub.repo}/releases/download/{tag}/{name}"
            with urllib.request.urlopen(url, timeout=120) as r, (part / name).open("wb") as f:
                shutil.copyfileobj(r, f)
    except Exception as e:
        shutil.rmtree(part, ignore_errors=True)
        raise EvalError(f"cannot download {pub.repo} release {tag} ({type(e).__name__}: {e}); "
                        "pass --data FILE instead") from None
    shutil.rmtree(folder, ignore_errors=True)
    part.replace(folder)
