#!/usr/bin/env bash
# Creates the secrets the COFRAP functions and their database read, in the
# functions' namespace, with generated values:
#
#   db-credentials-username   the functions' database role (DB_USER, default cofrap_functions)
#   db-credentials-password   its password: 32 random URL-safe characters
#   db-admin-username         the database's bootstrap superuser (DB_ADMIN, default postgres),
#                             used only by the schema Job (k8s/db-migrate-job.yaml)
#   db-admin-password         its password: 32 random URL-safe characters
#   encryption-key            a Fernet key (32 random bytes, URL-safe base64)
#
# Each secret holds one key named like the secret itself, so OpenFaaS mounts
# it as /var/openfaas/secrets/<name>. Values go through files in a private
# temporary folder, never through the command line, and are never printed.
#
# A secret that already exists is kept: a new encryption-key would make every
# stored 2FA secret unreadable (see "Rotating the Fernet key" in the README).
#
#   k8s-secrets/create-secrets.sh           create them in the cluster
#   k8s-secrets/create-secrets.sh --seal    write SealedSecrets to k8s-secrets/sealed/
#                                            (kubeseal; safe to commit, for GitOps)
set -euo pipefail

NAMESPACE=${NAMESPACE:-openfaas-fn}
DB_USER=${DB_USER:-cofrap_functions}
DB_ADMIN=${DB_ADMIN:-postgres}
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
secret db-admin-username "$DB_ADMIN"
secret db-admin-password "$(random_base64url 24)"
secret encryption-key "$(random_base64url 32)"
