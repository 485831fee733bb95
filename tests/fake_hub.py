"""An in-process fake of the Hub's HTTP API, behind huggingface_hub's own client (``set_client_factory``).

It answers the endpoints a push touches (repo creation, refs, branches, commits, trees, YAML validation,
preupload, commit), keeps every repo's branches and commits in memory with their files' bytes, and
records each request. Large files go through Git LFS as on the Hub (see ``LfsStore``): preupload answers
``lfs`` for what .gitattributes tracks and for binary or large files, the LFS batch endpoint hands out upload
URLs only for objects the repo does not hold yet, the upload is checked against its sha256, and a commit is
refused when it names an LFS object that was never uploaded or carries a binary file inline. huggingface_hub
uploads through Xet when hf_xet is installed (a protocol the fake does not speak): inside the context it
takes the LFS path, as it does where hf_xet is missing.

``fail`` queues failures for a path: a status code (answered as such) or an exception (raised by the
transport, as a dropped connection is). Use it as a context manager: the default client factory is put back
on exit.

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
from fnmatch import fnmatch
from urllib.parse import unquote

import httpx2
import yaml
from huggingface_hub import constants, set_client_factory
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook

ENDPOINT = constants.ENDPOINT
# what a new repo's first commit holds (a subset of the Hub's default .gitattributes)
GITATTRIBUTES = b"".join(
    f"{p} filter=lfs diff=lfs merge=lfs -text\n".encode()
    for p in ("*.bin", "*.ckpt", "*.h5", "*.msgpack", "*.npy", "*.onnx", "*.pt", "*.pth", "*.safetensors", "*.zip")
)
LFS_SIZE = 10 * 1000 * 1000  # the Hub takes larger files through LFS only
# What the Hub's metadata validation refuses, as far as these cards go (a subset of the real rules)
LICENSES = {"apache-2.0", "mit", "bigcode-openrail-m", "openrail", "other", "cc-by-4.0", "llama2"}
RELATIONS = {"adapter", "merge", "quantized", "finetune"}
PIPELINE_TAGS = {"text-generation", "text-classification", "text2text-generation", "fill-mask", "feature-extraction"}
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
    if meta.get("license") == "other" and not (meta.get("license_name") and meta.get("license_link")):
        errors.append('"license: other" needs "license_name" and "license_link"')
    tags = meta.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        errors.append(f'"tags" must be a list of strings, got {tags!r}')
    if "pipeline_tag" in meta and meta["pipeline_tag"] not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" {meta["pipeline_tag"]!r} is not a Hub task')
    if "library_name" in meta and not isinstance(meta["library_name"], str):
        errors.append('"library_name" must be a string')
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


# ---------------------------------------------------------------------------------------------- Git LFS
def lfs_patterns(gitattributes: bytes) -> list[str]:
    """The patterns a .gitattributes sends through LFS (``PATTERN filter=lfs ...``)."""
    lines = gitattributes.decode(errors="replace").splitlines()
    return [line.split()[0] for line in lines if "filter=lfs" in line.split()[1:]]


def upload_mode(path: str, sample: bytes, size: int, tracked: list[str]) -> str:
    """What the Hub's preupload answers: ``lfs`` for a path .gitattributes tracks, a file over 10 MB, or a binary
    one (a NUL byte in its first 512 bytes, git's test); ``regular`` otherwise (an empty file is regular)."""
    name = path.rsplit("/", 1)[-1]
    if size and (any(fnmatch(path, p) or fnmatch(name, p) for p in tracked) or size > LFS_SIZE or b"\0" in sample):
        return "lfs"
    return "regular"


@dataclass
class LfsStore:
    """One repo's LFS objects: uploaded (sha256 -> bytes, kept across pushes as the Hub keeps them) and the
    uploads the batch endpoint has handed out."""

    objects: dict[str, bytes] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)  # oid -> size, handed out and not yet uploaded

    def committed(self, pointer: dict) -> bytes | None:
        content = self.objects.get(pointer.get("oid", ""))
        if (
            content is None
            or pointer.get("algo", "sha256") != "sha256"
            or pointer.get("size", len(content)) != len(content)
        ):
            return None
        return content

    def tree_entry(self, content: bytes) -> dict:
        oid = hashlib.sha256(content).hexdigest()
        if oid in self.objects:
            return {"lfs": {"oid": oid, "size": len(content), "pointerSize": 134}}
        return {}


class LfsEndpoints:
    """The LFS batch API (``/{repo}.git/info/lfs/objects/batch``), the upload URLs it hands out and their
    verification, as the Hub's answers go for ``basic`` transfers."""

    def lfs_store(self, repo_id: str) -> LfsStore:
        stores = self.__dict__.setdefault("_lfs", {})
        return stores.setdefault(repo_id, LfsStore())

    def lfs_uploads(self) -> list[str]:
        """The oids whose bytes were uploaded, in order (each PUT that reached the fake)."""
        return [
            r.url.path.rsplit("/", 1)[1] for r in self.requests if r.method == "PUT" and "/lfs-upload/" in r.url.path
        ]

    def lfs_batch(self, request, repo_id):
        if isinstance(self._repo(repo_id), httpx2.Response):
            return self._repo(repo_id)
        body = json.loads(request.content)
        if body.get("operation") != "upload" or body.get("hash_algo", "sha256") != "sha256":
            return httpx2.Response(422, json={"message": "fake hub: only sha256 uploads"})
        store, objects = self.lfs_store(repo_id), []
        for obj in body["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in store.objects:  # what the repo holds already needs no upload
                store.expected[obj["oid"]] = obj["size"]
                answer["actions"] = {
                    "upload": {"href": f"{ENDPOINT}/lfs-upload/{repo_id}/{obj['oid']}"},
                    "verify": {"href": f"{ENDPOINT}/lfs-verify/{repo_id}"},
                }
            objects.append(answer)
        return httpx2.Response(200, json={"transfer": "basic", "objects": objects})

    def lfs_upload(self, request, repo_id, oid):
        store = self.lfs_store(repo_id)
        content = request.read()
        if oid not in store.expected:
            return httpx2.Response(403, text="fake hub: no upload was handed out for this object")
        if hashlib.sha256(content).hexdigest() != oid or len(content) != store.expected[oid]:
            return httpx2.Response(400, text="fake hub: the uploaded bytes do not match their oid and size")
        store.objects[oid] = content
        del store.expected[oid]
        return httpx2.Response(200)

    def lfs_verify(self, request, repo_id):
        body = json.loads(request.content)
        content = self.lfs_store(repo_id).objects.get(body["oid"])
        if content is None or len(content) != body["size"]:
            return httpx2.Response(404, json={"error": "fake hub: object not uploaded"})
        return httpx2.Response(200, json={})


LFS_ROUTES = [
    ("POST", r"/(?P<repo_id>[^/]+/[^/]+)\.git/info/lfs/objects/batch", LfsEndpoints.lfs_batch),
    ("PUT", r"/lfs-upload/(?P<repo_id>[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})", LfsEndpoints.lfs_upload),
    ("POST", r"/lfs-verify/(?P<repo_id>[^/]+/[^/]+)", LfsEndpoints.lfs_verify),
]


class FakeHub(LfsEndpoints):
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
        self._xet_disabled = constants.HF_HUB_DISABLE_XET
        constants.HF_HUB_DISABLE_XET = True  # huggingface_hub's LFS path, not Xet's (no fake of that protocol)
        return self

    def __exit__(self, *exc) -> None:
        set_client_factory(default_client_factory)
        constants.HF_HUB_DISABLE_XET = self._xet_disabled

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
                {
                    "type": "file",
                    "path": p,
                    "size": len(b),
                    "oid": hashlib.sha1(b).hexdigest(),
                    **self.lfs_store(repo_id).tree_entry(b),
                }
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
        tracked = lfs_patterns(repo.files(revision).get(".gitattributes", b"") if revision in repo.branches else b"")
        return httpx2.Response(
            200,
            json={
                "files": [
                    {
                        "path": f["path"],
                        "uploadMode": upload_mode(f["path"], base64.b64decode(f["sample"]), f["size"], tracked),
                        "shouldIgnore": False,
                        "oid": None,
                    }
                    for f in files
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
        tracked = lfs_patterns(files.get(".gitattributes", b""))
        for line in lines[1:]:
            if line["key"] == "file":
                content = base64.b64decode(line["value"]["content"])
                if upload_mode(line["value"]["path"], content[:512], len(content), tracked) == "lfs":
                    return httpx2.Response(
                        400,
                        json={
                            "error": f"Your push was rejected because it contains binary files: "
                            f"{line['value']['path']} must go through LFS"
                        },
                    )
                files[line["value"]["path"]] = content
            elif line["key"] == "lfsFile":
                content = self.lfs_store(repo_id).committed(line["value"])
                if content is None:
                    return httpx2.Response(
                        422,
                        json={
                            "error": f"Your push was rejected because an LFS pointer pointed to a file that does "
                            f"not exist: {line['value']['path']} ({line['value'].get('oid')})"
                        },
                    )
                files[line["value"]["path"]] = content
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
    *LFS_ROUTES,
]
