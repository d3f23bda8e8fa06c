"""crane_tools.containerd: the offline busybox image (stdlib only) and the private containerd."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile

import pytest
from crane_tools import containerd as ctrd


@pytest.mark.skipif(not os.path.isfile(ctrd.BUSYBOX), reason="no /bin/busybox (busybox-static)")
def test_busybox_image_is_a_valid_oci_layout(tmp_path):
    path = tmp_path / "bb.tar"
    assert ctrd.build_busybox_image(path) == ctrd.IMAGE
    with tarfile.open(path) as tar:
        index = json.load(tar.extractfile("index.json"))
        desc = index["manifests"][0]
        assert desc["annotations"]["io.containerd.image.name"] == ctrd.IMAGE
        blobs = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.startswith("blobs/sha256/")
                 and m.isfile()}
        for name, data in blobs.items():  # content-addressed
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
        manifest = json.loads(blobs["blobs/sha256/" + desc["digest"].split(":")[1]])
        layer_digest = manifest["layers"][0]["digest"]
        config = json.loads(blobs["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
        assert config["rootfs"]["diff_ids"] == [layer_digest]  # uncompressed: digest = diff_id
        assert tar.extractfile("oci-layout") is not None
    import io

    with tarfile.open(fileobj=io.BytesIO(blobs["blobs/sha256/" + layer_digest.split(":")[1]])) as layer:
        names = {m.name: m for m in layer.getmembers()}
        assert names["bin/sh"].issym() and names["bin/sh"].linkname == "busybox"
        assert names["tmp"].mode == 0o1777 and {"proc", "sys", "dev", "etc/passwd", "etc/group"} <= set(names)


def test_available_is_a_bool_with_a_reason():
    assert isinstance(ctrd.available(), bool)
    assert ctrd.available() == (ctrd.unavailable_reason() == "")


@pytest.mark.skipif(not ctrd.available(), reason=f"no private containerd: {ctrd.unavailable_reason()}")
def test_private_containerd_imports_the_image_and_cleans_up():
    d = tempfile.mkdtemp(prefix="ctt", dir="/tmp")
    with ctrd.PrivateContainerd(d) as c:
        assert os.path.exists(c.socket)
        assert ctrd.IMAGE in c.ctr("images", "ls", "-q")
    assert not os.path.exists(d)
    assert not any(d in line for line in open("/proc/self/mounts"))
