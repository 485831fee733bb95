"""An in-process fake of the Hub's HTTP API, behind huggingface_hub's own client (``set_client_factory``).

It answers the endpoints a push touches (repo creation, refs, branches, commits, trees, YAML validation,
preupload, commit), keeps every repo's branches and commits in memory with their files' bytes, and
records each request. ``fail`` queues failures for a path: a status code (answered as such) or an
exception (raised by the transport, as a dropped connection is). Use it as a context manager: the default
client factory is put back on exit.

    with FakeHub() as hub:
        HfApi().create_repo("me/x")
        hub.repos["me/x"].files("main")  # {".gitattributes": b"..."}
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field
from urllib.parse import unquote

import httpx2
import yaml
from huggingface_hub import constants, set_client_factory
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook

ENDPOINT = constants.ENDPOINT
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
# What the Hub's metadata validation refuses, as far as these cards go (a subset of the real rules)
LICENSES = {"apache-2.0", "mit", "bigcode-openrail-m", "openrail", "other", "cc-by-4.0", "llama2"}
RELATIONS = {"adapter", "merge", "quantized", "finetune"}
LANGUAGE = re.compile(r"^[a-z]{2,3}$")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Commit:
    oid: str
    title: str
    parent: str | None
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> head commit oid

    def files(self, branch: str = "main") -> dict[str, bytes]:
        return dict(self.commits[self.branches[branch]].files)

    def history(self, branch: str = "main") -> list[Commit]:
        out, oid = [], self.branches[branch]
        while oid is not None:
            out.append(self.commits[oid])
            oid = self.commits[oid].parent
        return out


def validate_card(text: str) -> list[str]:
    """Errors the Hub's /api/validate-yaml would answer for a card's front matter (the rules these cards meet)."""
    if not text.startswith("---\n"):
        return []
    try:
        meta = yaml.safe_load(text.split("---\n", 2)[1]) or {}
    except yaml.YAMLError as err:
        return [f"invalid YAML: {err}"]
    errors = []
    languages = meta.get("language", [])
    for lang in [languages] if isinstance(languages, str) else languages or []:
        if not isinstance(lang, str) or not LANGUAGE.match(lang):
            errors.append(f'"language" must be ISO 639 codes, got {lang!r}')
    if "license" in meta and meta["license"] not in LICENSES:
        errors.append(f'"license" {meta["license"]!r} is not a known license id')
    for dataset in meta.get("datasets") or []:
        if not isinstance(dataset, str) or not REPO_ID.match(dataset):
            errors.append(f'"datasets" must be dataset ids, got {dataset!r}')
    bases = meta.get("base_model")
    for base in [bases] if isinstance(bases, str) else bases or []:
        if not isinstance(base, str) or not REPO_ID.match(base):
            errors.append(f'"base_model" must be model ids, got {base!r}')
    if "base_model_relation" in meta:
        if meta["base_model_relation"] not in RELATIONS:
            errors.append(f'"base_model_relation" must be one of {sorted(RELATIONS)}')
        if not bases:
            errors.append('"base_model_relation" needs "base_model"')
    for entry in meta.get("model-index") or []:
        if not isinstance(entry, dict) or "name" not in entry:
            errors.append('"model-index" entries need a name')
            continue
        for result in entry.get("results", []):
            task, dataset, metrics = result.get("task", {}), result.get("dataset", {}), result.get("metrics", [])
            if not task.get("type") or not dataset.get("type") or not dataset.get("name") or not metrics:
                errors.append('"model-index" results need task.type, dataset.type, dataset.name and metrics')
            for metric in metrics:
                if "type" not in metric or "value" not in metric:
                    errors.append('"model-index" metrics need type and value')
    return errors


class FakeHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[httpx2.Request] = []
        self.failures: dict[str, deque] = defaultdict(deque)  # path regex -> queued failures
        self._counter = 0

    # ------------------------------------------------------------------ test controls
    def fail(self, path_pattern: str, *failures) -> None:
        """Answer the next requests whose path matches with these: an int status, an exception to raise, or a
        callable run on the request before it is answered as usual."""
        self.failures[path_pattern].extend(failures)

    def calls(self, method: str | None = None, pattern: str = "") -> list[str]:
        return [
            f"{r.method} {r.url.path}"
            for r in self.requests
            if (method is None or r.method == method) and re.search(pattern, r.url.path)
        ]

    def commit_outside(self, repo_id: str, branch: str, files: dict[str, bytes], title: str = "someone else") -> str:
        """A commit made by someone else (another machine) on a branch."""
        repo = self.repos[repo_id]
        return self._commit(repo, branch, title, {**repo.files(branch), **files})

    # ------------------------------------------------------------------ plumbing
    def __enter__(self) -> FakeHub:
        def factory():
            return httpx2.Client(
                transport=httpx2.MockTransport(self.handle),
                follow_redirects=True,
                event_hooks={"request": [hf_request_event_hook]},
            )

        set_client_factory(factory)
        return self

    def __exit__(self, *exc) -> None:
        set_client_factory(default_client_factory)

    def _oid(self) -> str:
        self._counter += 1
        return hashlib.sha1(f"commit-{self._counter}".encode()).hexdigest()

    def _commit(self, repo: Repo, branch: str, title: str, files: dict[str, bytes]) -> str:
        oid = self._oid()
        repo.commits[oid] = Commit(oid, title, repo.branches.get(branch), files)
        repo.branches[branch] = oid
        return oid

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = unquote(request.url.path)
        for pattern, queue in self.failures.items():
            if queue and re.search(pattern, path):
                failure = queue.popleft()
                if isinstance(failure, BaseException):
                    raise failure
                if callable(failure):  # something that happens first (another machine commits); then answered
                    failure(request)
                    break
                return httpx2.Response(failure, json={"error": f"fake hub: {failure}"}, headers={"Retry-After": "0"})
        for method, pattern, answer in ROUTES:
            match = re.fullmatch(pattern, path)
            if match and request.method == method:
                return answer(self, request, **match.groupdict())
        return httpx2.Response(404, json={"error": f"fake hub: no route for {request.method} {path}"})

    def _repo(self, repo_id: str) -> Repo | httpx2.Response:
        if repo_id not in self.repos:
            return httpx2.Response(
                404, json={"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"}
            )
        return self.repos[repo_id]

    # ------------------------------------------------------------------ endpoints
    def create_repo(self, request):
        body = json.loads(request.content)
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        if repo_id in self.repos:
            return httpx2.Response(
                409, json={"error": "You already created this model repo", "url": f"{ENDPOINT}/{repo_id}"}
            )
        repo = self.repos[repo_id] = Repo(repo_id, private=body.get("visibility", "public") == "private")
        self._commit(repo, "main", "initial commit", {".gitattributes": GITATTRIBUTES})
        return httpx2.Response(200, json={"url": f"{ENDPOINT}/{repo_id}", "name": repo_id})

    def refs(self, request, repo_id):
        repo = self._repo(repo_id)
        if isinstance(repo, httpx2.Response):
            return repo
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid} for b, oid in repo.branches.items()]
        return httpx2.Response(200, json={"branches": branches, "converts": [], "tags": []})

    def create_branch(self, request, repo_id, branch):
        repo = self._repo(repo_id)
        if isinstance(repo, httpx2.Response):
            return repo
        if branch in repo.branches:
            return httpx2.Response(409, json={"error": "Reference already exists"})
        start = json.loads(request.content or b"{}").get("startingPoint") or repo.branches["main"]
        repo.branches[branch] = repo.branches.get(start, start)
        return httpx2.Response(200, json={})

    def commits(self, request, repo_id, revision):
        repo = self._repo(repo_id)
        if isinstance(repo, httpx2.Response):
            return repo
        if revision not in repo.branches:
            return httpx2.Response(404, json={"error": "Invalid rev id"}, headers={"X-Error-Code": "RevisionNotFound"})
        return httpx2.Response(
            200,
            json=[
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": "",
                    "authors": [{"user": "fake"}],
                    "date": "2026-01-01T00:00:00.000Z",
                }
                for c in repo.history(revision)
            ],
        )

    def tree(self, request, repo_id, revision):
        repo = self._repo(repo_id)
        if isinstance(repo, httpx2.Response):
            return repo
        oid = repo.branches.get(revision, revision)
        if oid not in repo.commits:
            return httpx2.Response(404, json={"error": "Invalid rev id"}, headers={"X-Error-Code": "RevisionNotFound"})
        return httpx2.Response(
            200,
            json=[
                {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for p, b in sorted(repo.commits[oid].files.items())
            ],
        )

    def dataset_info(self, request, repo_id):
        """A dataset repo's info, as far as readers pin it: its id and the head commit of main."""
        repo = self._repo(repo_id)
        if isinstance(repo, httpx2.Response):
            return repo
        return httpx2.Response(200, json={"id": repo_id, "sha": repo.branches["main"], "private": repo.private})

    def validate_yaml(self, request):
        errors = validate_card(json.loads(request.content)["content"])
        if errors:
            return httpx2.Response(400, text="Invalid metadata in README.md.\n- " + "\n- ".join(errors))
        return httpx2.Response(200, json={"errors": [], "warnings": []})

    def preupload(self, request, repo_id, revision):
        if isinstance(repo := self._repo(repo_id), httpx2.Response):
            return repo
        files = json.loads(request.content)["files"]
        return httpx2.Response(
            200,
            json={
                "files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files
                ]
            },
        )

    def commit(self, request, repo_id, revision):
        repo = self._repo(repo_id)
        if isinstance(repo, httpx2.Response):
            return repo
        if revision not in repo.branches:
            return httpx2.Response(404, json={"error": "Invalid rev id"}, headers={"X-Error-Code": "RevisionNotFound"})
        lines = [json.loads(line) for line in request.content.splitlines() if line.strip()]
        header = lines[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != repo.branches[revision]:
            return httpx2.Response(412, json={"error": "A commit has happened since. Please refresh and try again."})
        files = repo.files(revision)
        for line in lines[1:]:
            if line["key"] == "file":
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] == "deletedFile":
                files.pop(line["value"]["path"], None)
            else:
                return httpx2.Response(400, json={"error": f"fake hub: unsupported {line['key']}"})
        oid = self._commit(repo, revision, header["summary"], files)
        return httpx2.Response(
            200, json={"commitUrl": f"{ENDPOINT}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}
        )


REPO = r"(?P<repo_id>[^/]+/[^/]+)"
ROUTES = [
    ("POST", r"/api/repos/create", FakeHub.create_repo),
    ("GET", rf"/api/models/{REPO}/refs", FakeHub.refs),
    ("POST", rf"/api/models/{REPO}/branch/(?P<branch>.+)", FakeHub.create_branch),
    ("GET", rf"/api/models/{REPO}/commits/(?P<revision>.+)", FakeHub.commits),
    ("GET", rf"/api/models/{REPO}/tree/(?P<revision>[^/]+)", FakeHub.tree),
    ("POST", r"/api/validate-yaml", FakeHub.validate_yaml),
    ("GET", rf"/api/datasets/{REPO}", FakeHub.dataset_info),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<revision>.+)", FakeHub.preupload),
    ("POST", rf"/api/models/{REPO}/commit/(?P<revision>.+)", FakeHub.commit),
]
