#!/bin/sh
# Runs on the controller (role consrv, tasks/certificate.yml): prints the host
# certificate the host should have. That is the current one ($HOST_CERT) while it
# certifies $HOST_KEY_PUB as a host, is signed by $CA_KEY, names exactly
# $PRINCIPALS and stays valid for more than $RENEW_DAYS days; otherwise a new one
# signed now (ssh-keygen -s $CA_KEY -h -I $KEY_ID -n $PRINCIPALS -V $VALIDITY).
# So a second run prints the same bytes and the copy to the host changes nothing.
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '%s\n' "$HOST_KEY_PUB" >"$dir/host.pub"

current_is_good() {
  [ -n "${HOST_CERT:-}" ] || return 1
  printf '%s\n' "$HOST_CERT" >"$dir/current-cert.pub"
  info=$(ssh-keygen -L -f "$dir/current-cert.pub" 2>/dev/null) || return 1
  ssh-keygen -y -f "$CA_KEY" >"$dir/ca.pub"
  key_fp=$(ssh-keygen -l -f "$dir/host.pub" | cut -d' ' -f2)
  ca_fp=$(ssh-keygen -l -f "$dir/ca.pub" | cut -d' ' -f2)
  printf '%s\n' "$info" | grep -q "Type: .* host certificate" || return 1
  printf '%s\n' "$info" | grep "Public key:" | grep -qF " $key_fp" || return 1
  printf '%s\n' "$info" | grep "Signing CA:" | grep -qF " $ca_fp " || return 1
  names=$(printf '%s\n' "$info" | sed -n '/Principals:/,/Critical Options:/p' \
    | sed '1d;$d' | tr -d ' \t' | paste -sd, -)
  [ "$names" = "$PRINCIPALS" ] || return 1
  until=$(printf '%s\n' "$info" | sed -n 's/.*Valid: .* to \([^ ]*\)$/\1/p')
  [ "$until" = forever ] && return 0
  [ "$until" \> "$(date -d "+$RENEW_DAYS days" +%Y-%m-%dT%H:%M:%S)" ]
}

if current_is_good; then
  cat "$dir/current-cert.pub"
else
  ssh-keygen -q -s "$CA_KEY" -h -I "$KEY_ID" -n "$PRINCIPALS" -V "$VALIDITY" "$dir/host.pub"
  cat "$dir/host-cert.pub"
fi
