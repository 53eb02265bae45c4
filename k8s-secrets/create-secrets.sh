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
#   jwt-signing-keys          an Ed25519 key signing the access tokens (a 32-byte
#                             random seed, base64)
#
# Each secret holds one key named like the secret itself, so OpenFaaS mounts
# it as /var/openfaas/secrets/<name>. Values go through files in a private
# temporary folder, never through the command line, and are never printed.
#
# A secret that already exists is kept: a new encryption-key would make every
# stored 2FA secret unreadable (see "Rotating the Fernet key" in docs/OPERATIONS.md),
# and a new jwt-signing-keys would invalidate every access token in flight
# (see "Rotating the signing key").
#
#   k8s-secrets/create-secrets.sh           create them in the cluster
#   k8s-secrets/create-secrets.sh --seal    write SealedSecrets to k8s-secrets/sealed/
#                                            (kubeseal; safe to commit, for GitOps)
#   k8s-secrets/create-secrets.sh --upgrade an installation from before the database
#                                            roles, whose db-credentials-* hold the
#                                            bootstrap superuser: they become db-admin-*,
#                                            then new db-credentials-* are created for
#                                            the functions' role (then run `make db`)
set -euo pipefail

NAMESPACE=${NAMESPACE:-openfaas-fn}
DB_USER=${DB_USER:-cofrap_functions}
DB_ADMIN=${DB_ADMIN:-postgres}
SEALED_DIR=${SEALED_DIR:-$(dirname "$0")/sealed}

mode=create
upgrade=false
case "${1:-}" in
    "") ;;
    --seal) mode=seal ;;
    --upgrade) upgrade=true ;;
    *) echo "usage: $0 [--seal | --upgrade]" >&2; exit 2 ;;
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

exists() { kubectl get secret "$1" --namespace "$NAMESPACE" >/dev/null 2>&1; }

# Before the roles, the functions logged in as the bootstrap superuser: its
# credentials move, unchanged and unseen, from db-credentials-* to db-admin-*.
if [ "$upgrade" = true ]; then
    if exists db-admin-username; then
        echo "db-admin-username exists in $NAMESPACE: nothing to upgrade"
    elif exists db-credentials-username; then
        for part in username password; do
            kubectl get secret "db-credentials-$part" --namespace "$NAMESPACE" \
                -o "jsonpath={.data.db-credentials-$part}" | base64 -d > "$work/db-admin-$part"
        done
        if [ "$(cat "$work/db-admin-username")" = "$DB_USER" ]; then
            echo "db-credentials-username already names $DB_USER: create db-admin-* by hand" >&2
            exit 1
        fi
        for part in username password; do
            kubectl create secret generic "db-admin-$part" --namespace "$NAMESPACE" \
                --from-file="db-admin-$part=$work/db-admin-$part" >/dev/null
            kubectl delete secret "db-credentials-$part" --namespace "$NAMESPACE" >/dev/null
        done
        echo "the database's superuser moved from db-credentials-* to db-admin-* in $NAMESPACE"
    fi
fi

secret db-credentials-username "$DB_USER"
secret db-credentials-password "$(random_base64url 24)"
secret db-admin-username "$DB_ADMIN"
secret db-admin-password "$(random_base64url 24)"
secret encryption-key "$(random_base64url 32)"
secret jwt-signing-keys "$(random_base64url 32)"
