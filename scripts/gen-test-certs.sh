#!/usr/bin/env bash
# Generates the TLS test certificates in tests/certs/ (committed; run again only to replace them).
# A test CA signs three server certificates for localhost and 127.0.0.1, valid for 100 years, one
# per private-key format the server reads:
#   ecdsa.pem / ecdsa.key      P-256, PKCS#8 key            (the default in tests)
#   rsa.pem / rsa.key          RSA 2048, PKCS#1 key
#   ecdsa-b.pem / ecdsa-b.key  P-256, SEC1 key, another subject (the reload tests swap to it)
#   ecdsa.spki-sha256          ecdsa.pem's public-key hash, which tests/browser.rs gives Chromium
# Clients trust ca.pem. Needs the openssl command-line tool.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../tests/certs"
days=36500
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=wspush test CA" -keyout "$work/ca.key" -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign"

sign() { # name subject key-file
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/ext"
  openssl req -new -key "$3" -subj "/CN=$2" -out "$work/$1.csr"
  openssl x509 -req -in "$work/$1.csr" -CA ca.pem -CAkey "$work/ca.key" -CAcreateserial \
    -days "$days" -extfile "$work/ext" -out "$1.pem"
}

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ecdsa.key
sign ecdsa "wspush test A" ecdsa.key
# What Chromium trusts in tests/browser.rs (--ignore-certificate-errors-spki-list): the base64
# SHA-256 of the leaf's DER SubjectPublicKeyInfo.
openssl x509 -in ecdsa.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64 > ecdsa.spki-sha256

openssl genrsa -traditional -out rsa.key 2048 2>/dev/null || openssl genrsa -out rsa.key 2048
sign rsa "wspush test RSA" rsa.key

openssl ecparam -name prime256v1 -genkey -noout -out ecdsa-b.key
sign ecdsa-b "wspush test B" ecdsa-b.key
echo "written: $(ls)"
