"""Lists what an OCI image layout holds, for tests/dist/image.rs (stdlib only).

Usage: oci_layout.py LAYOUT_DIR

Follows index.json to every image manifest (through image indexes, as `podman manifest push`
writes them, or directly, as `podman save --format oci-dir` does) and prints, per image:

    image PLATFORM entrypoint=JSON layers=N
    file PLATFORM PATH MODE UID GID SIZE SHA256

one `file` line for every entry of every layer (directories included, with the size 0 and the
hash "-"), so that the test sees everything the image would put on a filesystem.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


def blob(layout, digest):
    algorithm, value = digest.split(":", 1)
    with open(os.path.join(layout, "blobs", algorithm, value), "rb") as file:
        return file.read()


def images(layout, descriptors):
    for descriptor in descriptors:
        document = json.loads(blob(layout, descriptor["digest"]))
        media_type = descriptor.get("mediaType") or document.get("mediaType")
        if media_type in INDEX_TYPES:
            yield from images(layout, document["manifests"])
        else:
            yield document


def layer_entries(data):
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            content = archive.extractfile(member) if member.isfile() else None
            digest = hashlib.sha256(content.read()).hexdigest() if content else "-"
            name = member.name[2:] if member.name.startswith("./") else member.name
            yield name or ".", member.mode, member.uid, member.gid, member.size if content else 0, digest


def main(layout):
    with open(os.path.join(layout, "index.json")) as file:
        top = json.load(file)
    for manifest in images(layout, top["manifests"]):
        config = json.loads(blob(layout, manifest["config"]["digest"]))
        platform = f"{config['os']}/{config['architecture']}"
        entrypoint = json.dumps(config.get("config", {}).get("Entrypoint"))
        print(f"image {platform} entrypoint={entrypoint} layers={len(manifest['layers'])}")
        for layer in manifest["layers"]:
            for name, mode, uid, gid, size, digest in layer_entries(blob(layout, layer["digest"])):
                print(f"file {platform} {name} {mode:o} {uid} {gid} {size} {digest}")


if __name__ == "__main__":
    main(sys.argv[1])
