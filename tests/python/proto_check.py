#!/usr/bin/env python3
"""Check ankus's compiled protos against python-pachyderm 6.3.3's generated ones.

Usage: python proto_check.py DESCRIPTOR_SET_FILE

Run inside a virtualenv with python-pachyderm==6.3.3 and protobuf==3.20.x.
DESCRIPTOR_SET_FILE is the binary FileDescriptorSet our build writes
(ankus_descriptor.bin). For every message and enum we define (google.protobuf
files excepted), the definition with the same full name is looked up among
python-pachyderm's modules and compared field by field (name, number, type,
type name, repeated-or-not) in both directions; enums by value names and
numbers. Our service methods must exist upstream with the same request and
response types and streaming kinds. Exits 1 listing every mismatch.
"""

import importlib
import pkgutil
import sys

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FieldDescriptor

import python_pachyderm.proto as pp_proto

FDP = descriptor_pb2.FieldDescriptorProto
TYPE_NAMES = {
    v: k[len("TYPE_"):].lower()
    for k, v in vars(FDP).items()
    if k.startswith("TYPE_") and isinstance(v, int)
}


def load_upstream():
    errors = []
    for mod in pkgutil.walk_packages(pp_proto.__path__, pp_proto.__name__ + "."):
        try:
            importlib.import_module(mod.name)
        except Exception as exc:  # a broken upstream module should not hide others
            errors.append("cannot import %s: %s" % (mod.name, exc))
    return descriptor_pool.Default(), errors


def describe(ftype, type_name, repeated):
    t = TYPE_NAMES.get(ftype, str(ftype))
    if type_name:
        t += " " + type_name.lstrip(".")
    return ("repeated " if repeated else "") + t


def ours_field(f):
    return describe(f.type, f.type_name if f.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM) else "",
                    f.label == FDP.LABEL_REPEATED)


def theirs_field(f):
    tn = ""
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        tn = f.message_type.full_name
    elif f.type == FieldDescriptor.TYPE_ENUM:
        tn = f.enum_type.full_name
    return describe(f.type, tn, f.label == FieldDescriptor.LABEL_REPEATED)


def compare_message(full, msg, pool, problems):
    try:
        theirs = pool.FindMessageTypeByName(full)
    except KeyError:
        problems.append("message %s: missing from python-pachyderm" % full)
        return
    their_fields = {f.number: f for f in theirs.fields}
    our_numbers = set()
    for f in msg.field:
        our_numbers.add(f.number)
        t = their_fields.get(f.number)
        if t is None:
            problems.append("%s.%s = %d: field not in python-pachyderm" % (full, f.name, f.number))
            continue
        if t.name != f.name:
            problems.append("%s field %d: name %s, python-pachyderm has %s" % (full, f.number, f.name, t.name))
        a, b = ours_field(f), theirs_field(t)
        if a != b:
            problems.append("%s.%s = %d: type %s, python-pachyderm has %s" % (full, f.name, f.number, a, b))
    for n, t in sorted(their_fields.items()):
        if n not in our_numbers:
            problems.append("%s.%s = %d: python-pachyderm field missing from ours (%s)"
                            % (full, t.name, n, theirs_field(t)))


def compare_enum(full, enum, pool, problems):
    try:
        theirs = pool.FindEnumTypeByName(full)
    except KeyError:
        problems.append("enum %s: missing from python-pachyderm" % full)
        return
    ours = {v.name: v.number for v in enum.value}
    their = {v.name: v.number for v in theirs.values}
    if ours != their:
        problems.append("enum %s: values %s, python-pachyderm has %s" % (full, sorted(ours.items(), key=lambda x: x[1]),
                                                                       sorted(their.items(), key=lambda x: x[1])))


def walk(prefix, messages, enums, pool, problems, counts):
    for e in enums:
        compare_enum(prefix + e.name, e, pool, problems)
        counts["enums"] += 1
    for m in messages:
        full = prefix + m.name
        compare_message(full, m, pool, problems)
        if m.options.map_entry:
            counts["map_entries"] += 1
        else:
            counts["messages"] += 1
        walk(full + ".", m.nested_type, m.enum_type, pool, problems, counts)


def upstream_services(pool, fd_names):
    services = {}
    for name in fd_names:
        fdp = descriptor_pb2.FileDescriptorProto()
        pool.FindFileByName(name).CopyToProto(fdp)
        for s in fdp.service:
            services[(fdp.package + "." + s.name).lstrip(".")] = {m.name: m for m in s.method}
    return services


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python proto_check.py DESCRIPTOR_SET_FILE")
    fds = descriptor_pb2.FileDescriptorSet()
    with open(sys.argv[1], "rb") as fh:
        fds.ParseFromString(fh.read())

    pool, problems = load_upstream()
    counts = {"messages": 0, "map_entries": 0, "enums": 0, "methods": 0}

    upstream_files = [mod.DESCRIPTOR.name for mod in sys.modules.values()
                      if getattr(mod, "__name__", "").startswith(pp_proto.__name__ + ".")
                      and mod.__name__.endswith("_pb2") and hasattr(mod, "DESCRIPTOR")]
    their_services = upstream_services(pool, upstream_files)

    for fd in fds.file:
        if fd.package.startswith("google.protobuf"):
            continue
        prefix = fd.package + "." if fd.package else ""
        walk(prefix, fd.message_type, fd.enum_type, pool, problems, counts)
        for s in fd.service:
            full = prefix + s.name
            theirs = their_services.get(full)
            if theirs is None:
                problems.append("service %s: missing from python-pachyderm" % full)
                continue
            for m in s.method:
                counts["methods"] += 1
                t = theirs.get(m.name)
                if t is None:
                    problems.append("rpc /%s/%s: missing from python-pachyderm" % (full, m.name))
                    continue
                ours = (m.input_type.lstrip("."), m.output_type.lstrip("."), m.client_streaming, m.server_streaming)
                their = (t.input_type.lstrip("."), t.output_type.lstrip("."), t.client_streaming, t.server_streaming)
                if ours != their:
                    problems.append("rpc /%s/%s: (in, out, client_stream, server_stream) %s, python-pachyderm has %s"
                                    % (full, m.name, ours, their))

    for p in problems:
        print("MISMATCH:", p)
    print("compared %d messages (+%d map entries), %d enums, %d rpc methods: %d mismatches"
          % (counts["messages"], counts["map_entries"], counts["enums"], counts["methods"], len(problems)))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
