#!/usr/bin/env bash
# Makes sure a Docker engine answers for `make test-compose`: installs Debian's
# docker.io (dockerd 20.10, containerd, runc) and debootstrap where missing, and
# starts dockerd in the background (data in /var/lib/docker, log in
# /var/log/warren-dockerd.log) when none answers. An engine already running is used
# as it is. Needs root (apt-get, dockerd).
set -euo pipefail

if docker info >/dev/null 2>&1; then
	exit 0
fi
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ((${#need[@]})); then
	echo "[compose-engine] installing ${need[*]} (Debian packages)" >&2
	apt-get -o DPkg::Lock::Timeout=300 update -qq
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian CLI comes with docker.io; a newer one on PATH (any with `docker
# compose` plugins) is fine too.
echo "[compose-engine] starting dockerd" >&2
setsid nohup dockerd --data-root /var/lib/docker >>/var/log/warren-dockerd.log 2>&1 </dev/null &
for _ in $(seq 1 60); do
	docker info >/dev/null 2>&1 && exit 0
	sleep 1
done
echo "[compose-engine] dockerd did not answer in 60 s; /var/log/warren-dockerd.log:" >&2
tail -20 /var/log/warren-dockerd.log >&2
exit 1
