
ô
3f2a9c0d1e2f
io.kubernetes.pod.nameweb-1#
io.kubernetes.container.nameappdocker.io/library/python:3.12"u
io.containerd.runc.v2\
containerd.runc.v1.Options>2/usr/local/bin/kybernate-runc:/run/containerd/runc/k8s.ioH*o
6types.containerd.io/opencontainers/runtime-spec/1/Spec5{"ociVersion":"1.0.2","process":{"args":["python3"]}}2	overlayfs:3f2a9c0d1e2f