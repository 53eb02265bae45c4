#!/bin/sh
# make admin-job ARGS="...": runs one cofrap-admin command in the cluster, as
# the Job of k8s/admin-job.yaml, and prints what it printed.
#
# The Job gets a name of its own, the arguments given here (each one as a
# JSON string, so that no quote or backslash in a username changes the
# manifest), the operator's name (COFRAP_OPERATOR, else the login name here)
# and IMAGE. It is created, waited for (WAIT_SECONDS, 300 by default), its
# log printed, then deleted; the exit status is the tool's (0 done, 1 not
# possible, 2 usage), or 1 when the Job did not finish in time.
#
# Settings: NAMESPACE (openfaas-fn), IMAGE (ghcr.io/cofrap/cofrap-admin:latest),
# WAIT_SECONDS, MANIFEST (k8s/admin-job.yaml beside this script).
set -eu

NAMESPACE=${NAMESPACE:-openfaas-fn}
IMAGE=${IMAGE:-ghcr.io/cofrap/cofrap-admin:latest}
WAIT_SECONDS=${WAIT_SECONDS:-300}
MANIFEST=${MANIFEST:-$(dirname "$0")/admin-job.yaml}
if [ $# -eq 0 ]; then
    echo 'usage: make admin-job ARGS="show alice" (cofrap-admin --help lists the commands)' >&2
    exit 2
fi

# A JSON string: backslashes and double quotes escaped; control characters
# (which no username or operator's name holds) refused.
json() {
    case "$1" in
        *[[:cntrl:]]*) echo "admin-job: an argument holds a control character" >&2; exit 2 ;;
    esac
    printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}
args=
for arg; do
    args="$args${args:+, }$(json "$arg")"
done
operator=$(json "${COFRAP_OPERATOR:-$(id -un)}")
name=cofrap-admin-$(date -u +%Y%m%d-%H%M%S)-$$

# The manifest with those: awk reads them from its environment, where no
# character is special.
manifest=$(NAME=$name IMAGE=$IMAGE ARGS_JSON="[$args]" OPERATOR_JSON=$operator awk '
    function indent() { match($0, /^ */); return substr($0, 1, RLENGTH) }
    $0 == "  name: cofrap-admin" && !named { print "  name: " ENVIRON["NAME"]; named = 1; next }
    $0 ~ /^ *image: ghcr\.io\/cofrap\/cofrap-admin:latest$/ { print indent() "image: " ENVIRON["IMAGE"]; next }
    $0 ~ /^ *args: \["--help"\]$/ { print indent() "args: " ENVIRON["ARGS_JSON"]; next }
    operator && $0 ~ /^ *value: ""$/ { print indent() "value: " ENVIRON["OPERATOR_JSON"]; operator = 0; next }
    { operator = ($0 ~ /^ *- name: COFRAP_OPERATOR$/) }
    { print }
' "$MANIFEST")

printf '%s\n' "$manifest" | kubectl -n "$NAMESPACE" create -f - >/dev/null
trap 'kubectl -n "$NAMESPACE" delete job "$name" --ignore-not-found --wait=false >/dev/null' EXIT

# Finished when its pod has succeeded or failed (the tool bounds its own
# waits on the database; this bounds a pod that never starts).
waited=0
while :; do
    finished=$(kubectl -n "$NAMESPACE" get job "$name" -o 'jsonpath={.status.succeeded}{.status.failed}')
    [ -n "$finished" ] && break
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
        echo "admin-job: job $name did not finish within $WAIT_SECONDS s" >&2
        kubectl -n "$NAMESPACE" describe job "$name" >&2 || true
        exit 1
    fi
    sleep 2
    waited=$((waited + 2))
done
kubectl -n "$NAMESPACE" logs "job/$name"
status=$(kubectl -n "$NAMESPACE" get pods -l "job-name=$name" \
    -o 'jsonpath={.items[0].status.containerStatuses[0].state.terminated.exitCode}')
exit "${status:-1}"
