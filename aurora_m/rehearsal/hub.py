"""The recorded Hub: what the Hugging Face Hub serves for the datasets the real recipes read, answered offline.

Each ``recorded_hub/<owner>--<name>.yaml`` is a snapshot of one dataset repo: its file tree (paths, and the real
sizes where a listing showed them), whether it ships a loading script, its card's configs, the columns and
their types, gating and licence, and a few short rows per data file (written here, schema-true, never copied
from the dataset), each fact with the page it came from (``sources``) or ``not found`` when no stored card or
listing showed it.

:class:`RecordedHub` answers the Hub's HTTP API for them behind huggingface_hub's own client factory (the
boundary ``tests/fake_hub.py`` fakes for pushes), so ``datasets`` runs its own resolution and streaming code on
``load_dataset(..., streaming=True)`` and ``hf://`` paths: repo info, tree, paths-info and resolve (with byte
ranges). A repo with a loading script is refused by datasets >= 4 exactly as on the real Hub, a gated repo
answers 401/403 unless access is granted, and every byte served is counted per repo (``bytes_served``).

Data files are served small: a file holds the snapshot's rows (parquet with the recorded schema, or JSON
lines), so the tree lists the served sizes; the real sizes stay in the snapshot for the cost estimate.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import parse_qs, unquote

import yaml
from huggingface_hub.constants import REPOCARD_NAME

SNAPSHOTS = Path(__file__).with_name("recorded_hub")
ENDPOINT = "https://huggingface.co"
SCRIPT_NOTE = b"# loading script: present on the Hub (recorded); its code is not copied here\n"


@dataclass
class RecordedRepo:
    """One dataset repo as recorded (see the module docstring for the YAML it is read from)."""

    repo_id: str
    sha: str
    card: dict  # the README's YAML front matter as served (configs, licence, gating fields)
    features: dict[str, str]  # column -> type: string, int64, bool, list<string>, list<{role: string, ...}>
    groups: list[dict]  # [{files: [paths], rows: [...]}]: the data files and the rows each holds
    other_files: dict[str, int | None]  # path -> real size: scripts, docs (served as a short note)
    gated: str | bool = False
    sources: dict[str, str] = field(default_factory=dict)
    real_sizes: dict[str, int | None] = field(default_factory=dict)  # data file -> size on the real Hub

    @classmethod
    def load(cls, path: Path) -> RecordedRepo:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        groups, real = [], {}
        for group in raw.get("data", []):
            files = _expand(group["files"])
            groups.append(
                {
                    "files": files,
                    "rows": group["rows"],
                    "features": group.get("features"),
                    "encoding": group.get("encoding"),
                }
            )
            each = group.get("size_each")
            if each is None and group.get("total_size"):  # a card's download size for the whole group
                each = group["total_size"] // len(files)
            for name in files:
                real[name] = each
        sha = raw.get("revision") or hashlib.sha1(path.read_bytes()).hexdigest()
        return cls(
            repo_id=raw["repo"],
            sha=sha,
            card=raw.get("card") or {},
            features=raw.get("features") or {},
            groups=groups,
            other_files={f["path"]: f.get("size") for f in raw.get("files", [])},
            gated=raw.get("gated", False),
            sources=raw.get("sources") or {},
            real_sizes=real,
        )

    @cached_property
    def files(self) -> dict[str, bytes]:
        """Every file as served: README.md from the card, notes for scripts, data files from their rows."""
        out = {p: SCRIPT_NOTE for p in self.other_files}
        front = yaml.safe_dump(self.card, sort_keys=False, allow_unicode=True) if self.card else ""
        out[REPOCARD_NAME] = (f"---\n{front}---\n" if front else "") + f"# {self.repo_id} (recorded)\n"
        out[REPOCARD_NAME] = out[REPOCARD_NAME].encode()
        for group in self.groups:
            features = group["features"] or self.features
            made: dict[str, bytes] = {}  # a group's files share their rows: made once per kind of file
            for name in group["files"]:
                kind = name.rsplit(".", 2)[-1] if not name.endswith(".gz") else name.rsplit(".", 3)[-2] + ".gz"
                if kind not in made:
                    made[kind] = _data_file(name, group["rows"], features, group.get("encoding") or "utf-8")
                out[name] = made[kind]
        return out

    def facts(self) -> dict:
        """Gating, licence and the facts no stored card or listing confirmed (for the report)."""
        unverified = sorted(
            k for k, v in self.sources.items() if "not verified" in v.lower() or "not found" in v.lower()
        )
        return {"gated": self.gated, "license": self.card.get("license"), "unverified": unverified}

    def loading_scripts(self) -> list[str]:
        """The file datasets >= 4 refuses a repo for: ``<repo name>.py`` at its root (datasets' load.py); another
        root .py (natural-instructions' get_ni.py) is only a file."""
        script = self.repo_id.split("/")[-1] + ".py"
        return [p for p in self.other_files if p == script]


def _expand(files) -> list[str]:
    """File lists in the YAML: plain paths, or {pattern: "x/train-{i:05d}-of-00041.parquet", count: 41} (indices from
    ``start``, 0 by default, to count - 1: a first file whose real name is known can be listed apart)."""
    out = []
    for item in files:
        if isinstance(item, str):
            out.append(item)
        else:
            out.extend(item["pattern"].format(i=i) for i in range(item.get("start", 0), item["count"]))
    return out


def _arrow_type(kind: str):
    import pyarrow as pa

    scalars = {
        "string": pa.string(),
        "int64": pa.int64(),
        "int32": pa.int32(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
    }
    if kind in scalars:
        return scalars[kind]
    if kind.startswith("timestamp"):
        return pa.timestamp("s")
    if kind.startswith("list<{") and kind.endswith("}>"):  # list<{role: string, content: string}>
        inner = yaml.safe_load("{" + kind[6:-2] + "}")
        return pa.list_(pa.struct([(k, _arrow_type(v)) for k, v in inner.items()]))
    if kind.startswith("list<") and kind.endswith(">"):
        return pa.list_(_arrow_type(kind[5:-1]))
    raise ValueError(f"recorded hub: unknown column type {kind!r}")


def _value(value, kind: str):
    """A YAML value in its column's type (timestamps are written as ISO text)."""
    if kind.startswith("timestamp") and isinstance(value, str):
        from datetime import datetime

        return datetime.fromisoformat(value)
    return value


def _data_file(name: str, rows: list[dict], features: dict[str, str], encoding: str = "utf-8") -> bytes:
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(column, _arrow_type(kind)) for column, kind in features.items()])
        table = pa.Table.from_pylist(
            [{c: _value(row.get(c), features[c]) for c in features} for row in rows], schema=schema
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()
    if name.endswith(".csv"):
        import csv

        sink = io.StringIO()
        writer = csv.DictWriter(sink, fieldnames=list(features), lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: row.get(c) for c in features} for row in rows)
        return sink.getvalue().encode(encoding)
    text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    if name.endswith(".gz"):
        import gzip

        return gzip.compress(text.encode(), mtime=0)
    return text.encode()


def load_snapshots(folder: Path = SNAPSHOTS) -> dict[str, RecordedRepo]:
    repos = (RecordedRepo.load(p) for p in sorted(Path(folder).glob("*.yaml")))
    return {r.repo_id: r for r in repos}


class RecordedHub:
    """Answers the Hub's dataset endpoints from snapshots; a context manager that installs itself as
    huggingface_hub's client factory, turns the offline switches off for its own answers (nothing leaves the
    process), and keeps downloads in ``cache_dir`` so no recorded file reaches the user's real cache.

    ``access``: repo id -> False to answer a gated repo as to a user without access (403), True to grant it;
    by default every gated repo is granted (a rehearsal checks the code paths, the report lists the gates).
    """

    def __init__(self, repos: dict[str, RecordedRepo] | None = None, cache_dir: str | Path | None = None, access=None):
        self.repos = load_snapshots() if repos is None else repos
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.access = dict(access or {})
        self.bytes_served: Counter = Counter()
        self.files_read: dict[str, set[str]] = {}
        self.reads: list[tuple[str, str]] = []  # (repo, file) of every data read, in order
        self.requests: list[str] = []
        self._undo: list = []

    # ------------------------------------------------------------------ installing
    def __enter__(self) -> RecordedHub:
        import datasets.config
        import httpx2
        from huggingface_hub import constants, set_client_factory

        def factory():
            return httpx2.Client(transport=httpx2.MockTransport(self.handle), follow_redirects=True)

        saved = {
            (constants, "HF_HUB_OFFLINE"): constants.HF_HUB_OFFLINE,
            (datasets.config, "HF_HUB_OFFLINE"): datasets.config.HF_HUB_OFFLINE,
            (datasets.config, "HF_DATASETS_OFFLINE"): datasets.config.HF_DATASETS_OFFLINE,
        }
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            saved[(constants, "HF_HUB_CACHE")] = constants.HF_HUB_CACHE
            saved[(datasets.config, "HF_DATASETS_CACHE")] = datasets.config.HF_DATASETS_CACHE
            saved[(datasets.config, "HF_MODULES_CACHE")] = datasets.config.HF_MODULES_CACHE
            constants.HF_HUB_CACHE = str(self.cache_dir / "hub")
            datasets.config.HF_DATASETS_CACHE = self.cache_dir / "datasets"
            datasets.config.HF_MODULES_CACHE = self.cache_dir / "modules"
        constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = False
        set_client_factory(factory)
        self._undo = list(saved.items())
        return self

    def __exit__(self, *exc) -> None:
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils._http import default_client_factory

        set_client_factory(default_client_factory)
        for (module, name), value in self._undo:
            setattr(module, name, value)

    # ------------------------------------------------------------------ answering
    def handle(self, request):
        import httpx2

        path = unquote(request.url.path)
        self.requests.append(f"{request.method} {path}")
        for method, pattern, answer in _ROUTES:
            match = re.fullmatch(pattern, path)
            if match and request.method in method:
                return answer(self, request, **match.groupdict())
        if request.url.host.startswith("datasets-server"):  # the viewer's parquet export: not recorded
            return httpx2.Response(404, json={"error": "recorded hub: no dataset viewer"})
        return httpx2.Response(404, json={"error": f"recorded hub: no route for {request.method} {path}"})

    def _repo(self, repo_id: str, revision: str, files: bool = False):
        import httpx2

        repo = self.repos.get(repo_id)
        if repo is None:
            return httpx2.Response(
                404,
                json={"error": f"Repository not found (not recorded: {repo_id})"},
                headers={"X-Error-Code": "RepoNotFound"},
            )
        if revision not in ("main", repo.sha):
            return httpx2.Response(404, json={"error": "Invalid rev id"}, headers={"X-Error-Code": "RevisionNotFound"})
        if files and repo.gated and not self.access.get(repo_id, True):
            return httpx2.Response(
                403,
                json={"error": f"Access to dataset {repo_id} is restricted. You must have access to it."},
                headers={"X-Error-Code": "GatedRepo"},
            )
        return repo

    def info(self, request, repo_id, revision="main"):
        import httpx2

        if isinstance(repo := self._repo(repo_id, revision), httpx2.Response):
            return repo
        return httpx2.Response(
            200,
            json={
                "id": repo_id,
                "sha": repo.sha,
                "private": False,
                "gated": repo.gated,
                "disabled": False,
                "cardData": repo.card,
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                "tags": [],
            },
        )

    def _entries(self, repo: RecordedRepo, paths) -> list[dict]:
        out = []
        folders = set()
        for p in paths:
            if p in repo.files:
                data = repo.files[p]
                out.append({"type": "file", "path": p, "size": len(data), "oid": hashlib.sha1(data).hexdigest()})
            elif any(f.startswith(p.rstrip("/") + "/") for f in repo.files) and p not in folders:
                folders.add(p)
                out.append({"type": "directory", "path": p.rstrip("/"), "oid": hashlib.sha1(p.encode()).hexdigest()})
        return out

    def tree(self, request, repo_id, revision, path=""):
        import httpx2

        if isinstance(repo := self._repo(repo_id, revision), httpx2.Response):
            return repo
        path = (path or "").strip("/")
        recursive = parse_qs(request.url.query.decode() if isinstance(request.url.query, bytes) else request.url.query)
        recursive = recursive.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{path}/" if path else ""
        if path and path in repo.files:
            return httpx2.Response(404, json={"error": "not a folder"}, headers={"X-Error-Code": "EntryNotFound"})
        below = [f for f in repo.files if f.startswith(prefix)]
        if path and not below:
            return httpx2.Response(
                404, json={"error": f"{path} does not exist"}, headers={"X-Error-Code": "EntryNotFound"}
            )
        names = set()
        for f in below:
            rest = f[len(prefix) :].split("/")
            if recursive:
                names.update(prefix + "/".join(rest[: i + 1]) for i in range(len(rest)))
            else:
                names.add(prefix + rest[0])
        return httpx2.Response(200, json=self._entries(repo, sorted(names)))

    def paths_info(self, request, repo_id, revision):
        import httpx2

        if isinstance(repo := self._repo(repo_id, revision), httpx2.Response):
            return repo
        body = request.content.decode()
        paths = parse_qs(body).get("paths") if "=" in body and not body.startswith("{") else None
        if paths is None:
            paths = json.loads(body or "{}").get("paths", [])
        return httpx2.Response(200, json=self._entries(repo, [p.strip("/") for p in paths]))

    def resolve(self, request, repo_id, revision, path):
        import httpx2

        if isinstance(repo := self._repo(repo_id, revision, files=True), httpx2.Response):
            return repo
        data = repo.files.get(path)
        if data is None:
            return httpx2.Response(
                404,
                json={"error": "Entry not found"},
                headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.sha},
            )
        etag = hashlib.sha1(data).hexdigest()
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return httpx2.Response(200, headers={**headers, "Content-Length": str(len(data))})
        status, body = 200, data
        if match := re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", "")):
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data):
                return httpx2.Response(416, headers=headers)
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self.bytes_served[repo_id] += len(body)
        self.files_read.setdefault(repo_id, set()).add(path)
        self.reads.append((repo_id, path))
        return httpx2.Response(status, content=body, headers=headers)


REPO = r"(?P<repo_id>[^/]+/[^/]+)"
REV = r"(?P<revision>[^/]+)"
_ROUTES = [
    (("GET",), rf"/api/datasets/{REPO}", RecordedHub.info),
    (("GET",), rf"/api/datasets/{REPO}/revision/{REV}", RecordedHub.info),
    (("GET",), rf"/api/datasets/{REPO}/tree/{REV}(?:/(?P<path>.*))?", RecordedHub.tree),
    (("POST",), rf"/api/datasets/{REPO}/paths-info/{REV}", RecordedHub.paths_info),
    (("GET", "HEAD"), rf"/datasets/{REPO}/resolve/{REV}/(?P<path>.+)", RecordedHub.resolve),
]


@contextlib.contextmanager
def recorded_hub(cache_dir=None, access=None):
    with RecordedHub(cache_dir=cache_dir, access=access) as hub:
        yield hub
