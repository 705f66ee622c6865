"""What a real pachd holds, counted through python-pachyderm (neither tool under test): repos,
commits, pipelines and files at the head of every repo's master branch.

usage: real_count.py HOST:PORT     prints JSON: {"repos", "commits", "pipelines", "files"}
"""

import json
import sys

import peer

FILE = 1  # pfs.FileType.FILE

client = peer.client(sys.argv[1], None, raise_limits=False)
repos = [info.repo.name for info in client.list_repo()]
commits = files = 0
for name in repos:
    listed = list(client.list_commit(name))
    commits += len(listed)
    # Pipeline output repos hold one open commit (no worker ever runs): nothing to walk.
    if listed and listed[0].finished.seconds:  # newest first
        files += sum(1 for f in client.walk_file((name, "master"), "/") if f.file_type == FILE)
print(json.dumps({
    "repos": len(repos),
    "commits": commits,
    "pipelines": len(client.list_pipeline().pipeline_info),
    "files": files,
}))
