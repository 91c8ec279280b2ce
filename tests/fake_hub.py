"""A loopback Hugging Face hub: enough of the hub's HTTP API for `huggingface_hub` to download, list, create a repo
and commit, so tests fetch and push published weights without the internet (`HF_ENDPOINT` points here).

Endpoints (as huggingface_hub 0.24 - 2.x call them):
    HEAD/GET /{repo}/resolve/{revision}/{path}      X-Repo-Commit, ETag / X-Linked-Etag (sha256), X-Linked-Size, Range
    GET      /api/models/{repo}[/revision/{rev}]   model_info: sha, siblings
    GET      /api/models/{repo}/tree/{rev}          list_repo_tree / list_repo_files
    POST     /api/repos/create                      create_repo (409 when it exists)
    POST     /api/validate-yaml                     README metadata check
    POST     /api/models/{repo}/preupload/{rev}     every file "regular": sent inline with the commit
    POST     /api/models/{repo}/commit/{rev}        ndjson commit: header + base64 files

Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) as the real hub does, which
huggingface_hub turns into its typed exceptions. Writes need `Authorization: Bearer <token>` with a token the
server was given. Faults for tests: `corrupt` (paths served with one byte flipped, same length) and `truncate`
(paths whose body stops halfway while Content-Length promises all of it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def _commit_id(parent: str, files: dict[str, bytes], message: str) -> str:
    h = hashlib.sha1(parent.encode() + message.encode())
    for k in sorted(files):
        h.update(k.encode() + hashlib.sha256(files[k]).digest())
    return h.hexdigest()


class FakeHub:
    """Repos live in memory: repo id -> {"branches": {name: commit}, "commits": {commit: {path: bytes}}}."""

    def __init__(self, tokens: tuple[str, ...] = ()):
        self.repos: dict[str, dict] = {}
        self.tokens = set(tokens)
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, had an Authorization header)
        self.corrupt: set[str] = set()
        self.truncate: set[str] = set()
        self.http: ThreadingHTTPServer | None = None
        self._conns: set = set()  # open keep-alive connections, closed by stop() so a stopped hub is gone

    # ---- content ---------------------------------------------------------------------------------------
    def commit(self, repo: str, files: dict[str, bytes], branch: str = "main", message: str = "upload",
               delete: tuple[str, ...] = ()) -> str:
        r = self.repos.setdefault(repo, {"branches": {}, "commits": {}})
        parent = r["branches"].get(branch, "")
        tree = {k: v for k, v in r["commits"].get(parent, {}).items() if k not in delete}
        tree.update(files)
        sha = _commit_id(parent, tree, message)
        r["commits"][sha] = tree
        r["branches"][branch] = sha
        return sha

    def resolve(self, repo: str, revision: str) -> str | None:
        r = self.repos[repo]
        if revision in r["branches"]:
            return r["branches"][revision]
        return revision if revision in r["commits"] else None

    # ---- server ----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                hub._conns.add(self.connection)

            def finish(self):
                hub._conns.discard(self.connection)
                super().finish()

            def log_message(self, *a):
                pass

            def do_HEAD(self):
                hub._serve(self, head=True)

            def do_GET(self):
                hub._serve(self, head=False)

            def do_POST(self):
                hub._post(self)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None
        for conn in list(self._conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        self._conns.clear()

    # ---- handlers --------------------------------------------------------------------------------------
    @staticmethod
    def _send(h, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False,
              length: int | None = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def _json(self, h, obj, status: int = 200, head: bool = False, headers: dict | None = None) -> None:
        self._send(h, status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}, head)

    def _error(self, h, status: int, code: str | None, msg: str, head: bool = False, commit: str | None = None):
        headers = {"X-Error-Message": msg}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._json(h, {"error": msg}, status, head, headers)

    def _repo_of(self, parts: list[str]) -> str | None:
        repo = "/".join(parts[:2])
        return repo if repo in self.repos else None

    def _serve(self, h, head: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path, "authorization" in {k.lower() for k in h.headers}))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            return self._api_get(h, parts[2:], head)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve_file(h, parts, head)
        self._error(h, 404, None, f"no route {path}", head)

    def _resolve_file(self, h, parts: list[str], head: bool) -> None:
        repo = self._repo_of(parts)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", "Repository not found", head)
        revision, filename = parts[3], "/".join(parts[4:])
        commit = self.resolve(repo, revision)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        tree = self.repos[repo]["commits"][commit]
        if filename not in tree:
            return self._error(h, 404, "EntryNotFound", f"{filename} does not exist", head, commit)
        data = tree[filename]
        sha = hashlib.sha256(data).hexdigest()
        headers = {"X-Repo-Commit": commit, "ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"',
                   "X-Linked-Size": str(len(data)), "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if filename in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes=") and not head:
            start = int(rng[len("bytes="):].split("-")[0] or 0)
        body = data[start:]
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if filename in self.truncate and not head:
            self._send(h, status, body[: max(0, len(data) // 2 - start)], headers, length=len(body))
            h.close_connection = True
            return
        self._send(h, status, body, headers, head)

    def _api_get(self, h, parts: list[str], head: bool) -> None:
        repo = self._repo_of(parts)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", "Repository not found", head)
        rest = parts[2:]
        revision = rest[1] if len(rest) >= 2 and rest[0] in ("revision", "tree") else "main"
        commit = self.resolve(repo, revision)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        tree = self.repos[repo]["commits"][commit]
        if rest and rest[0] == "tree":
            return self._json(h, [{"type": "file", "path": k, "size": len(v), "oid": hashlib.sha1(v).hexdigest(),
                                   "lfs": {"oid": hashlib.sha256(v).hexdigest(), "size": len(v), "pointerSize": 134}}
                                  for k, v in sorted(tree.items())], head=head)
        return self._json(h, {"id": repo, "modelId": repo, "sha": commit, "private": False,
                              "siblings": [{"rfilename": k} for k in sorted(tree)]}, head=head)

    def _authorised(self, h) -> bool:
        auth = h.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[len("Bearer "):] in self.tokens

    def _post(self, h) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append(("POST", path, "authorization" in {k.lower() for k in h.headers}))
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        parts = path.strip("/").split("/")
        if path == "/api/validate-yaml":
            return self._json(h, {})
        if not self._authorised(h):
            return self._error(h, 401, None, "Invalid credentials in Authorization header")
        if path == "/api/repos/create":
            req = json.loads(body)
            repo = f"{req.get('organization')}/{req['name']}"
            if repo in self.repos:
                return self._error(h, 409, None, "You already created this model repo")
            self.repos[repo] = {"branches": {}, "commits": {}}
            self.commit(repo, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                        message="initial commit")
            return self._json(h, {"url": f"{self.url}/{repo}", "name": repo})
        repo = self._repo_of(parts[2:])
        if parts[:2] != ["api", "models"] or repo is None:
            return self._error(h, 404, "RepoNotFound", "Repository not found")
        op, revision = parts[4], parts[5] if len(parts) > 5 else "main"
        if op == "preupload":
            files = json.loads(body)["files"]
            return self._json(h, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                            for f in files]})
        if op == "commit":
            lines = [json.loads(x) for x in body.splitlines() if x.strip()]
            header = next(x["value"] for x in lines if x["key"] == "header")
            files = {x["value"]["path"]: base64.b64decode(x["value"]["content"]) for x in lines if x["key"] == "file"}
            deleted = tuple(x["value"]["path"] for x in lines if x["key"] == "deletedFile")
            sha = self.commit(repo, files, branch=revision, message=header.get("summary", ""), delete=deleted)
            return self._json(h, {"commitUrl": f"{self.url}/{repo}/commit/{sha}", "commitOid": sha,
                                  "success": True})
        self._error(h, 404, None, f"no route {path}")
