"""The container of a container job in the controller: validated at submission and after the filters,
kept in the stored spec, the image on the record (ContainerJob; a plain Job stays as it was), passed
to the node in the LaunchSpec and on into the StepSpec."""

from __future__ import annotations

import os
import pwd
import sys
import time

import pytest
from crane_kernel import messages as m
from crane_kernel.config import parse_config
from crane_kernel.ctld.jobs import ContainerJob, Job, job_from_spec, normalize_spec
from crane_kernel.ctld.speccheck import normalize_container
from crane_kernel.errors import JobRejected

ME = pwd.getpwuid(os.getuid())
CFG = parse_config({"Nodes": [{"name": "cn01", "cpu": 4, "memory": "8G"}],
                    "Partitions": [{"name": "debug", "nodes": "ALL"}]})


def _norm(container):
    spec = {"container": container}
    normalize_container(spec, CFG)
    return spec.get("container")


@pytest.mark.parametrize("image", ["busybox", "localhost/crane-busybox:1", "docker.io/library/alpine:3.19",
                                   "registry.example.org:5000/a/b-c_d.e:v1.2",
                                   "alpine@sha256:" + "a" * 64])
def test_image_references_accepted(image):
    assert _norm({"image": image}) == {"image": image}


@pytest.mark.parametrize("container,message", [
    ({"image": ""}, "needs an image"), ({"image": "Upper/Case"}, "not an image reference"),
    ({"image": "a b"}, "not an image reference"), ({"image": "x\n"}, "control character"),
    ({"image": "a" * 5000}, "longer than"),
    ({"image": "a", "ports": ["0"]}, "1 to 65535"), ({"image": "a", "ports": ["8080:70000"]}, "1 to 65535"),
    ({"image": "a", "ports": ["1:2:3"]}, "N or HOST:CONTAINER"), ({"image": "a", "ports": ["80"] * 17}, "at most"),
    ({"image": "a", "user": "root"}, "UID or UID:GID"), ({"image": "a", "user": "1:x"}, "UID or UID:GID"),
    ({"image": "a", "dns": ["1.1.1.1"] * 4}, "at most 3"), ({"image": "a", "dns": ["dns.google"]}, "not an IP"),
    ({"image": "a", "command": ["x"] * 300}, "at most 256"), ({"image": "a", "command": ["a\x00b"]}, "not text"),
    ({"image": "a", "pod_name": "Bad_Name"}, "pod name"), ({"image": "a", "bogus": 1}, "unknown container field"),
    ({"image": "a", "userns": "yes"}, "true or false"),
])
def test_container_refused(container, message):
    with pytest.raises(JobRejected, match=message) as exc:
        _norm(container)
    assert "\n" not in str(exc.value)


def test_container_canonicalised_and_empty_dropped():
    assert _norm({"image": "a", "ports": ["080", "8080:80"], "user": "1000:100", "userns": False,
                  "host_network": True, "dns": ["10.0.0.1", "::1"], "command": ["/bin/sh", "-c", "id"]}) == {
        "image": "a", "ports": ["80", "8080:80"], "user": "1000:100", "host_network": True,
        "dns": ["10.0.0.1", "::1"], "command": ["/bin/sh", "-c", "id"]}
    assert _norm({}) is None and _norm(None) is None


def test_normalize_spec_keeps_it_and_the_record_gets_the_image():
    raw = {"script": "#!/bin/sh\necho\n", "container": {"image": "localhost/crane-busybox:1"}}
    spec = normalize_spec(raw, CFG, ME.pw_uid, ME.pw_name, time.time())
    assert spec["container"] == {"image": "localhost/crane-busybox:1"}
    job = job_from_spec(1, spec)
    assert isinstance(job, ContainerJob) and job.container_image == "localhost/crane-busybox:1"
    plain = job_from_spec(2, normalize_spec({"script": "#!/bin/sh\n"}, CFG, ME.pw_uid, ME.pw_name, time.time()))
    assert type(plain) is Job and plain.container_image == "" and "container" not in Job.__slots__


def test_a_plain_job_record_keeps_its_size():
    spec = normalize_spec({"script": "#!/bin/sh\n"}, CFG, ME.pw_uid, ME.pw_name, time.time())
    plain = job_from_spec(1, spec)
    assert "container_image" not in Job.__slots__ and ContainerJob.__slots__ == ("container_image",)
    assert sys.getsizeof(plain) == Job.__basicsize__ + 16  # + the GC header: no slot was added to Job
    assert ContainerJob.__basicsize__ == Job.__basicsize__ + 8


def test_launch_spec_carries_the_container_into_the_step(tmp_path):
    from crane_kernel.craned.supervisor import build_step

    launch = m.LaunchSpec(uid=ME.pw_uid, gid=ME.pw_gid, script="#!/bin/sh\n", cwd=str(tmp_path),
                          container={"image": "busybox", "ports": ["80"], "command": ["true"]})
    step = build_step("cn01", str(tmp_path), 5, launch, str(tmp_path / "script"))
    assert step.container["image"] == "busybox" and step.container["ports"] == ["80"]
    assert step.container["command"] == ["true"] and step.container["userns"] is False
    plain = build_step("cn01", str(tmp_path), 6, m.LaunchSpec(uid=ME.pw_uid, gid=ME.pw_gid, script="x"),
                       str(tmp_path / "s2"))
    assert plain.container is None
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError
        m.LaunchSpec(uid=0, gid=0, script="x", container={"image": "a", "dns": ["1.1.1.1"] * 4})
