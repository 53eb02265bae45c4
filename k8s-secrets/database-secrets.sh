#!/usr/bin/env bash
# The secrets that tie the functions to their database, derived from secrets
# that already exist in the functions' namespace, by `make db`. Values go
# through files in a private temporary folder, never the command line, and
# are never printed.
#
#   database-secrets.sh postgres   the single-pod database (k8s/postgres.yaml)
#                                  has no TLS: db-ca-certificate is created
#                                  empty if it is missing, so that the
#                                  functions' secrets are the same for both
#                                  databases (they read it only at verify-full)
#   database-secrets.sh superuser  CloudNativePG (k8s/cnpg/): its superuser
#                                  `postgres` gets the password of the
#                                  project's db-admin-* secrets, through the
#                                  basic-auth secret cofrap-db-superuser that
#                                  the Cluster names (created or updated)
#   database-secrets.sh ca         CloudNativePG: the certificate of the
#                                  operator's CA (cofrap-db-ca, key ca.crt)
#                                  into db-ca-certificate, which the functions
#                                  and the schema Job verify the server with.
#                                  Only the certificate: the CA's private key
#                                  (ca.key, same secret) is never read
set -euo pipefail

NAMESPACE=${NAMESPACE:-openfaas-fn}
CLUSTER=${CLUSTER:-cofrap-db}

work=$(umask 077 && mktemp -d)
trap 'rm -rf "$work"' EXIT

exists() { kubectl get secret "$1" --namespace "$NAMESPACE" >/dev/null 2>&1; }

# One key of an existing secret, into a file of the private folder.
read_key() {
    local secret=$1 key=$2 file=$3
    # jsonpath needs the dots of a key name escaped (ca.crt -> ca\.crt).
    kubectl get secret "$secret" --namespace "$NAMESPACE" \
        -o "jsonpath={.data.${key//./\\.}}" | base64 -d > "$file"
}

# Creates the secret, or replaces its content if it exists.
apply_secret() {
    kubectl create secret generic "$@" --namespace "$NAMESPACE" --dry-run=client -o yaml \
        | kubectl apply -f - >/dev/null
}

case "${1:-}" in
    postgres)
        if exists db-ca-certificate; then
            echo "secret db-ca-certificate exists in $NAMESPACE: kept"
        else
            : > "$work/db-ca-certificate"
            kubectl create secret generic db-ca-certificate --namespace "$NAMESPACE" \
                --from-file="db-ca-certificate=$work/db-ca-certificate" >/dev/null
            echo "secret db-ca-certificate created empty in $NAMESPACE (this database has no TLS)"
        fi
        ;;
    superuser)
        for part in username password; do
            exists "db-admin-$part" || {
                echo "secret db-admin-$part is missing in $NAMESPACE: run make secrets first" >&2
                exit 1
            }
            read_key "db-admin-$part" "db-admin-$part" "$work/$part"
        done
        if [ "$(tr -d ' \t\r\n' < "$work/username")" != postgres ]; then
            echo "db-admin-username must be postgres, CloudNativePG's superuser" >&2
            exit 1
        fi
        printf postgres > "$work/username"
        apply_secret "$CLUSTER-superuser" --type=kubernetes.io/basic-auth \
            --from-file="username=$work/username" --from-file="password=$work/password"
        echo "secret $CLUSTER-superuser holds db-admin-password for postgres in $NAMESPACE"
        ;;
    ca)
        read_key "$CLUSTER-ca" ca.crt "$work/db-ca-certificate"
        if ! grep -q -- '-----BEGIN CERTIFICATE-----' "$work/db-ca-certificate" \
            || grep -q 'PRIVATE KEY' "$work/db-ca-certificate"; then
            echo "secret $CLUSTER-ca holds no CA certificate (ca.crt) in $NAMESPACE" >&2
            exit 1
        fi
        apply_secret db-ca-certificate --from-file="db-ca-certificate=$work/db-ca-certificate"
        echo "secret db-ca-certificate holds the certificate of $CLUSTER's CA in $NAMESPACE"
        ;;
    *)
        echo "usage: $0 postgres | superuser | ca" >&2
        exit 2
        ;;
esac
