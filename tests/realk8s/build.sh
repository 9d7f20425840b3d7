#!/usr/bin/env bash
# Build the real Kubernetes control-plane binaries the real_kubernetes tests start:
# kube-apiserver and kube-scheduler (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and
# kwok (sigs.k8s.io/kwok). Each is built from its Go module through the Go module proxy into
#   ${AIRFLOW_CARBON_K8S_CACHE:-~/.cache/airflow-carbon-provider/k8s}/<kubernetes version>/bin/
# once per version; a binary already there is kept. Nothing is written into the repository.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io/* staging module
# with ./staging/src/..., which a dependency's go.mod may not do. So each binary is built inside
# a small wrapper module that requires k8s.io/kubernetes and pins every staging module to the
# matching published v0.X.Y. etcd's server module has no main package of its own (the `etcd`
# command lives in the repository's root module), so its wrapper has a three-line main that
# calls etcdmain.Main, exactly what upstream's main.go does.
#
# Usage: tests/realk8s/build.sh            build what is missing, print the bin directory last
#        tests/realk8s/build.sh --print-dir print the bin directory only
set -euo pipefail

# Versions (keep in step with tests/realk8s/cluster.py). All three build with Go 1.26.
K8S_VERSION=v1.36.3        # go 1.26.0 in its go.mod
ETCD_VERSION=v3.6.16       # the 3.6 line k8s 1.36 is tested against (it requires etcd client 3.6.8)
KWOK_VERSION=v0.8.0        # built against k8s.io/client-go v0.36.1

cache_root="${AIRFLOW_CARBON_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-carbon-provider/k8s}"
dest="${cache_root}/${K8S_VERSION}"
bin="${dest}/bin"
if [ "${1:-}" = "--print-dir" ]; then echo "${bin}"; exit 0; fi

if ! command -v go > /dev/null; then
    echo "build.sh: no 'go' on PATH: install Go 1.26+ to build the real Kubernetes binaries" >&2
    exit 2
fi
mkdir -p "${bin}" "${dest}/src"
# One build at a time per version: a second caller (the pytest fixture while .ci/run's
# background build is still going) waits here, then finds everything built.
exec 9> "${dest}/.build.lock"
flock 9
# Builds are CPU-heavy: stay polite on a shared machine; reproducible, smaller binaries.
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false" CGO_ENABLED=0
nice_go() { nice -n 10 go "$@"; }
stamp() { date +%s; }

minor="${K8S_VERSION#v1.}"                  # 36.3
staging_version="v0.${minor}"              # v0.36.3

build_kubernetes() {
    local work="${dest}/src/kubernetes"
    mkdir -p "${work}"
    cd "${work}"
    if [ ! -f go.mod ]; then
        go mod init airflow-carbon-provider.invalid/realk8s/kubernetes > /dev/null 2>&1
        # The staging modules k8s.io/kubernetes replaces locally, pinned to their published tag.
        local gomod
        gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
        go mod edit -require "k8s.io/kubernetes@${K8S_VERSION}"
        sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "${gomod}" | while read -r mod; do
            go mod edit -replace "${mod}=${mod}@${staging_version}"
        done
        cat > tools.go <<'GO'
//go:build tools

// Package tools pins the commands this module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
        go mod tidy -e > /dev/null 2>&1 || true
        GOFLAGS="${GOFLAGS} -mod=mod" go mod download
    fi
    local version_flags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
    for cmd in kube-apiserver kube-scheduler; do
        if [ ! -x "${bin}/${cmd}" ]; then
            local t0; t0=$(stamp)
            echo "build.sh: building ${cmd} ${K8S_VERSION} (several minutes on 2 cores)" >&2
            GOFLAGS="${GOFLAGS} -mod=mod" nice_go build -ldflags "${version_flags}" -o "${bin}/${cmd}.tmp" "k8s.io/kubernetes/cmd/${cmd}"
            mv "${bin}/${cmd}.tmp" "${bin}/${cmd}"
            echo "build.sh: ${cmd} built in $(( $(stamp) - t0 )) s" | tee -a "${dest}/build-times.txt" >&2
        fi
    done
}

build_etcd() {
    [ -x "${bin}/etcd" ] && return 0
    local work="${dest}/src/etcd" t0
    t0=$(stamp)
    mkdir -p "${work}"
    cd "${work}"
    if [ ! -f go.mod ]; then
        go mod init airflow-carbon-provider.invalid/realk8s/etcd > /dev/null 2>&1
        cat > main.go <<'GO'
// Command etcd is upstream's etcd server, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
        go mod edit -require "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
        go mod tidy > /dev/null
    fi
    echo "build.sh: building etcd ${ETCD_VERSION}" >&2
    nice_go build -ldflags "-s -w" -o "${bin}/etcd.tmp" .
    mv "${bin}/etcd.tmp" "${bin}/etcd"
    echo "build.sh: etcd built in $(( $(stamp) - t0 )) s" | tee -a "${dest}/build-times.txt" >&2
}

build_kwok() {
    [ -x "${bin}/kwok" ] && return 0
    local t0; t0=$(stamp)
    echo "build.sh: building kwok ${KWOK_VERSION}" >&2
    # kwok's go.mod has no replace directives, so `go install module@version` works as is.
    GOBIN="${bin}" nice_go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
    echo "build.sh: kwok built in $(( $(stamp) - t0 )) s" | tee -a "${dest}/build-times.txt" >&2
}

started=$(stamp)
build_etcd
build_kwok
build_kubernetes
printf '%s\n' "kubernetes=${K8S_VERSION}" "etcd=${ETCD_VERSION}" "kwok=${KWOK_VERSION}" > "${dest}/versions.txt"
echo "build.sh: all binaries present after $(( $(stamp) - started )) s" >&2
echo "${bin}"
