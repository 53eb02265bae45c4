#!/usr/bin/env bash
# Creates the secrets the COFRAP functions and their database read, in the
# functions' namespace, with generated values:
#
#   db-credentials-username   the database user (DB_USER, default cofrap)
#   db-credentials-password   32 random URL-safe characters
#   encryption-key            a Fernet key (32 random bytes, URL-safe base64)
#   jwt-signing-keys          an Ed25519 key signing the access tokens (a 32-byte
#                             random seed, base64)
#
# Each secret holds one key named like the secret itself, so OpenFaaS mounts
# it as /var/openfaas/secrets/<name>. Values go through files in a private
# temporary folder, never through the command line, and are never printed.
#
# A secret that already exists is kept: a new encryption-key would make every
# stored 2FA secret unreadable (see "Rotating the Fernet key" in the README),
# and a new jwt-signing-keys would invalidate every access token in flight
# (see "Rotating the signing key").
#
#   k8s-secrets/create-secrets.sh           create them in the cluster
#   k8s-secrets/create-secrets.sh --seal    write SealedSecrets to k8s-secrets/sealed/
#                                            (kubeseal; safe to commit, for GitOps)
set -euo pipefail

NAMESPACE=${NAMESPACE:-openfaas-fn}
DB_USER=${DB_USER:-cofrap}
SEALED_DIR=${SEALED_DIR:-$(dirname "$0")/sealed}

mode=create
case "${1:-}" in
    "") ;;
    --seal) mode=seal ;;
    *) echo "usage: $0 [--seal]" >&2; exit 2 ;;
esac

work=$(umask 077 && mktemp -d)
trap 'rm -rf "$work"' EXIT

random_base64url() { head -c "$1" /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n'; }

secret() {
    local name=$1 value=$2
    printf '%s' "$value" > "$work/$name"
    if [ "$mode" = seal ]; then
        mkdir -p "$SEALED_DIR"
        kubectl create secret generic "$name" --namespace "$NAMESPACE" \
            --from-file="$name=$work/$name" --dry-run=client -o yaml \
            | kubeseal --namespace "$NAMESPACE" --format yaml > "$SEALED_DIR/$name.yaml"
        echo "sealed $name into $SEALED_DIR/$name.yaml"
    elif kubectl get secret "$name" --namespace "$NAMESPACE" >/dev/null 2>&1; then
        echo "secret $name exists in $NAMESPACE: kept"
    else
        kubectl create secret generic "$name" --namespace "$NAMESPACE" \
            --from-file="$name=$work/$name" >/dev/null
        echo "secret $name created in $NAMESPACE"
    fi
}

secret db-credentials-username "$DB_USER"
secret db-credentials-password "$(random_base64url 24)"
secret encryption-key "$(random_base64url 32)"
secret jwt-signing-keys "$(random_base64url 32)"
