#!/bin/sh
# meshlet-init: installs the iptables rules that send a pod's TCP traffic through its meshlet
# proxy. Runs once per pod, in the pod's network namespace, as the init container `meshlet-init`
# (needs NET_ADMIN and NET_RAW). POSIX sh; works with Debian's iptables-nft and iptables-legacy.
#
#   outbound: app TCP -> 127.0.0.1:$MESHLET_OUTBOUND_PORT, except connections made by the proxy's
#             UID, to loopback (the app talking to itself), to skipped ports and to skipped CIDRs
#   inbound:  TCP arriving for the app's ports -> $MESHLET_INBOUND_PORT, or to the proxy port the
#             app port has in $MESHLET_INBOUND_PORT_MAP (REDIRECT hides the port a connection
#             was for; a listener per app port tells the proxy); the proxy's own ports (inbound,
#             outbound, admin, the map's proxy ports) and skipped ports are never redirected
#
# Everything lives in two chains of the nat table, MESHLET_INBOUND (from PREROUTING) and
# MESHLET_OUTPUT (from OUTPUT). The environment is validated completely before iptables is
# touched; the chains are written with one iptables-restore (one transaction), so a run either
# installs the whole rule set or changes nothing. Running it again gives the same rules.
set -eu
# No globbing, and lists split on newlines only: an item like "80 90" or "*" stays one (bad) item.
set -f
NL='
'
IFS=$NL

usage() {
	cat <<'EOF'
usage: intercept.sh [--dry-run | --cleanup | --help]

  (no argument)  install (or re-install, idempotently) the interception rules
  --dry-run      validate the environment and print the rules; change nothing
  --cleanup      remove meshlet's chains and the jumps to them; nothing else

environment (defaults in brackets):
  MESHLET_PROXY_UID            UID the proxy runs as; its connections are not redirected [2102]
  MESHLET_OUTBOUND_PORT        proxy's outbound listener (on 127.0.0.1) [4140]
  MESHLET_INBOUND_PORT         proxy's inbound listener [4143]
  MESHLET_ADMIN_PORT           proxy's admin port, never redirected [4191]
  MESHLET_INBOUND_PORTS        comma list of app ports to redirect inbound; empty: all TCP;
                               none: no inbound redirect (outbound only) []
  MESHLET_INBOUND_PORT_MAP     comma list of APP_PORT=PROXY_PORT: that app port goes to that
                               proxy port (its own listener) instead of MESHLET_INBOUND_PORT []
  MESHLET_SKIP_INBOUND_PORTS   comma list of ports (or LOW-HIGH ranges) never redirected inbound []
  MESHLET_SKIP_OUTBOUND_PORTS  comma list of destination ports (or ranges) that bypass the proxy;
                               DNS (TCP 53) always does []
  MESHLET_SKIP_OUTBOUND_CIDRS  comma list of IPv4 CIDRs (or addresses) that bypass the proxy []
  MESHLET_IPTABLES             iptables, iptables-nft or iptables-legacy [iptables, or
                               iptables-legacy when iptables cannot read the nat table]
EOF
}

log() { printf 'meshlet-init: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

MODE=install
case "${1:-}" in
'') ;;
--dry-run) MODE=dry-run ;;
--cleanup) MODE=cleanup ;;
-h | --help)
	usage
	exit 0
	;;
*)
	usage >&2
	die "unknown argument: $1"
	;;
esac
[ $# -le 1 ] || die "expected at most one argument, got $#"

PROXY_UID=${MESHLET_PROXY_UID:-2102}
OUTBOUND_PORT=${MESHLET_OUTBOUND_PORT:-4140}
INBOUND_PORT=${MESHLET_INBOUND_PORT:-4143}
ADMIN_PORT=${MESHLET_ADMIN_PORT:-4191}
INBOUND_PORTS=${MESHLET_INBOUND_PORTS:-}
PORT_MAP=${MESHLET_INBOUND_PORT_MAP:-}
# "none": the app's inbound traffic is not redirected (a Pod that declares no port).
NO_INBOUND=no
if [ "$INBOUND_PORTS" = none ]; then
	NO_INBOUND=yes
	INBOUND_PORTS=
fi
SKIP_INBOUND_PORTS=${MESHLET_SKIP_INBOUND_PORTS:-}
SKIP_OUTBOUND_PORTS=${MESHLET_SKIP_OUTBOUND_PORTS:-}
SKIP_OUTBOUND_CIDRS=${MESHLET_SKIP_OUTBOUND_CIDRS:-}

IN_CHAIN=MESHLET_INBOUND
OUT_CHAIN=MESHLET_OUTPUT

# ---- validation: collect every problem, report them all, exit before touching iptables --------

PROBLEMS=''
problem() {
	PROBLEMS="$PROBLEMS
  - $*"
}

# A decimal integer without sign or leading zeros, at most 10 digits.
is_uint() {
	case $1 in
	'' | *[!0-9]* | 0?*) return 1 ;;
	esac
	[ ${#1} -le 10 ]
}

is_port() { is_uint "$1" && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

# The items of a comma list, one per line, blanks trimmed, empty items dropped.
items() {
	printf '%s\n' "$1" | tr ',' '\n' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e '/^$/d'
}

check_port() { # NAME VALUE
	is_port "$2" || problem "$1=\"$2\": expected a TCP port (1-65535)"
}

check_ports() { # NAME LIST RANGES_ALLOWED
	for p in $(items "$2"); do
		case $p in
		*-*)
			lo=${p%%-*}
			hi=${p#*-}
			if [ "$3" != yes ]; then
				problem "$1: \"$p\": expected a port (ranges are not allowed here)"
			elif ! is_port "$lo" || ! is_port "$hi"; then
				problem "$1: \"$p\": expected a port or a LOW-HIGH range of ports (1-65535)"
			elif [ "$lo" -gt "$hi" ]; then
				problem "$1: \"$p\": range starts after it ends"
			fi
			;;
		*) is_port "$p" || problem "$1: \"$p\": expected a TCP port (1-65535)" ;;
		esac
	done
}

is_octet() { is_uint "$1" && [ "$1" -le 255 ]; }

check_cidrs() { # NAME LIST
	for c in $(items "$2"); do
		addr=${c%/*}
		bits=32
		case $c in */*) bits=${c#*/} ;; esac
		ok=yes
		case $addr in
		*.*.*.*.* | *[!0-9.]*) ok=no ;;
		*.*.*.*)
			IFS=. read -r a b d e <<EOF
$addr
EOF
			for o in "$a" "$b" "$d" "$e"; do is_octet "$o" || ok=no; done
			;;
		*) ok=no ;;
		esac
		case $bits in '' | *[!0-9]* | 0?*) ok=no ;; *) [ "$bits" -le 32 ] || ok=no ;; esac
		case $addr in *:*) problem "$1: \"$c\": IPv6 is not supported (meshlet-init installs IPv4 rules only)" ;; *)
			[ $ok = yes ] || problem "$1: \"$c\": expected an IPv4 address or CIDR like 10.0.0.0/8" ;;
		esac
	done
}

if is_uint "$PROXY_UID" && [ "$PROXY_UID" -le 4294967294 ]; then :; else
	problem "MESHLET_PROXY_UID=\"$PROXY_UID\": expected a numeric UID"
fi
check_port MESHLET_OUTBOUND_PORT "$OUTBOUND_PORT"
check_port MESHLET_INBOUND_PORT "$INBOUND_PORT"
check_port MESHLET_ADMIN_PORT "$ADMIN_PORT"
check_ports MESHLET_INBOUND_PORTS "$INBOUND_PORTS" no
check_ports MESHLET_SKIP_INBOUND_PORTS "$SKIP_INBOUND_PORTS" yes
check_ports MESHLET_SKIP_OUTBOUND_PORTS "$SKIP_OUTBOUND_PORTS" yes
check_cidrs MESHLET_SKIP_OUTBOUND_CIDRS "$SKIP_OUTBOUND_CIDRS"

# The map's APP=PROXY items; both sides ports. MAPPED_APPS and MAPPED_PROXIES collect the valid ones.
MAPPED_APPS=''
MAPPED_PROXIES=''
for m in $(items "$PORT_MAP"); do
	a=${m%%=*}
	p=${m#*=}
	if [ "$a" = "$m" ] || ! is_port "$a" || ! is_port "$p"; then
		problem "MESHLET_INBOUND_PORT_MAP: \"$m\": expected APP_PORT=PROXY_PORT (TCP ports, 1-65535)"
		continue
	fi
	for x in $MAPPED_APPS; do [ "$x" != "$a" ] || problem "MESHLET_INBOUND_PORT_MAP: app port $a is mapped twice"; done
	for x in $MAPPED_PROXIES; do [ "$x" != "$p" ] || problem "MESHLET_INBOUND_PORT_MAP: proxy port $p is the target of two app ports"; done
	MAPPED_APPS="$MAPPED_APPS$NL$a"
	MAPPED_PROXIES="$MAPPED_PROXIES$NL$p"
done

if [ -z "$PROBLEMS" ]; then
	if [ "$OUTBOUND_PORT" = "$INBOUND_PORT" ] || [ "$OUTBOUND_PORT" = "$ADMIN_PORT" ] || [ "$INBOUND_PORT" = "$ADMIN_PORT" ]; then
		problem "the proxy's outbound ($OUTBOUND_PORT), inbound ($INBOUND_PORT) and admin ($ADMIN_PORT) ports must differ"
	fi
fi
# The proxy's own ports, the map's proxy ports included, are never redirected: not an app port.
is_proxy_port() {
	case $1 in "$OUTBOUND_PORT" | "$INBOUND_PORT" | "$ADMIN_PORT") return 0 ;; esac
	for x in $MAPPED_PROXIES; do [ "$x" != "$1" ] || return 0; done
	return 1
}
OWN="outbound $OUTBOUND_PORT, inbound $INBOUND_PORT, admin $ADMIN_PORT${MAPPED_PROXIES:+, mapped $(echo $MAPPED_PROXIES | tr ' ' ',')}"
for p in $(items "$INBOUND_PORTS"); do
	if is_proxy_port "$p"; then problem "MESHLET_INBOUND_PORTS: $p is one of the proxy's own ports ($OWN), which are never redirected"; fi
done
for p in $MAPPED_APPS; do
	if is_proxy_port "$p"; then problem "MESHLET_INBOUND_PORT_MAP: app port $p is one of the proxy's own ports ($OWN), which are never redirected"; fi
done
for p in $MAPPED_PROXIES; do
	case $p in "$OUTBOUND_PORT" | "$INBOUND_PORT" | "$ADMIN_PORT")
		problem "MESHLET_INBOUND_PORT_MAP: proxy port $p is already the proxy's outbound, inbound or admin port" ;;
	esac
done
if [ -n "$MAPPED_APPS" ]; then
	if [ "$NO_INBOUND" = yes ]; then
		problem "MESHLET_INBOUND_PORT_MAP is set but MESHLET_INBOUND_PORTS=none redirects nothing inbound"
	elif [ -n "$(items "$INBOUND_PORTS")" ]; then
		for a in $MAPPED_APPS; do
			listed=no
			for p in $(items "$INBOUND_PORTS"); do [ "$p" != "$a" ] || listed=yes; done
			[ $listed = yes ] || problem "MESHLET_INBOUND_PORT_MAP: app port $a is not in MESHLET_INBOUND_PORTS (add it there, or drop it from the map)"
		done
	fi
fi

# --cleanup reads none of it (the chain names are fixed): a bad value must not keep the rules in.
if [ -n "$PROBLEMS" ] && [ "$MODE" != cleanup ]; then
	printf 'meshlet-init: invalid environment, no rule changed:%s\n' "$PROBLEMS" >&2
	exit 2
fi

# ---- the rule set ----------------------------------------------------------------------------

# The proxy port an app port is redirected to: its own in the map, else the inbound port.
proxy_port_of() {
	for m in $(items "$PORT_MAP"); do
		[ "${m%%=*}" != "$1" ] || {
			printf '%s' "${m#*=}"
			return
		}
	done
	printf '%s' "$INBOUND_PORT"
}

# iptables wants LOW:HIGH for a range.
dport() { printf '%s' "$1" | tr '-' ':'; }

# The two chains, as iptables-restore input lines (the jumps come separately).
chain_rules() {
	echo ":$IN_CHAIN - [0:0]"
	echo ":$OUT_CHAIN - [0:0]"
	# Inbound: the proxy's own ports first, then skipped ports, then the redirects: an app port
	# with a proxy port of its own in the map goes there, every other to the inbound port.
	for p in "$INBOUND_PORT" "$OUTBOUND_PORT" "$ADMIN_PORT" $MAPPED_PROXIES; do
		echo "-A $IN_CHAIN -p tcp -m tcp --dport $p -j RETURN"
	done
	for p in $(items "$SKIP_INBOUND_PORTS"); do
		echo "-A $IN_CHAIN -p tcp -m tcp --dport $(dport "$p") -j RETURN"
	done
	if [ "$NO_INBOUND" = yes ]; then
		:
	elif [ -z "$(items "$INBOUND_PORTS")" ]; then
		for m in $(items "$PORT_MAP"); do
			echo "-A $IN_CHAIN -p tcp -m tcp --dport ${m%%=*} -j REDIRECT --to-ports ${m#*=}"
		done
		echo "-A $IN_CHAIN -p tcp -j REDIRECT --to-ports $INBOUND_PORT"
	else
		for p in $(items "$INBOUND_PORTS"); do
			echo "-A $IN_CHAIN -p tcp -m tcp --dport $p -j REDIRECT --to-ports $(proxy_port_of "$p")"
		done
	fi
	# Outbound: the proxy's own connections, loopback (the app talking to itself, its own pod IP
	# included), DNS, skipped CIDRs and ports leave as they are; every other TCP connection goes to
	# the outbound listener. DNS over TCP (port 53: a resolver retries a truncated UDP answer over
	# TCP, as for a headless Service with many Pods) is not HTTP and the proxy could only refuse it,
	# so it goes out directly whatever MESHLET_SKIP_OUTBOUND_PORTS says.
	echo "-A $OUT_CHAIN -m owner --uid-owner $PROXY_UID -j RETURN"
	echo "-A $OUT_CHAIN -o lo -j RETURN"
	echo "-A $OUT_CHAIN -p tcp -m tcp --dport 53 -j RETURN"
	for c in $(items "$SKIP_OUTBOUND_CIDRS"); do
		case $c in */*) ;; *) c="$c/32" ;; esac
		echo "-A $OUT_CHAIN -d $c -j RETURN"
	done
	for p in $(items "$SKIP_OUTBOUND_PORTS"); do
		echo "-A $OUT_CHAIN -p tcp -m tcp --dport $(dport "$p") -j RETURN"
	done
	echo "-A $OUT_CHAIN -p tcp -j REDIRECT --to-ports $OUTBOUND_PORT"
}

if [ "$MODE" = dry-run ]; then
	echo "*nat"
	chain_rules
	echo "-A PREROUTING -p tcp -j $IN_CHAIN"
	echo "-A OUTPUT -p tcp -j $OUT_CHAIN"
	echo "COMMIT"
	exit 0
fi

# ---- iptables --------------------------------------------------------------------------------

PATH="$PATH:/usr/sbin:/sbin"
IPT=${MESHLET_IPTABLES:-}
case $IPT in
'')
	if iptables -t nat -S >/dev/null 2>&1; then
		IPT=iptables
	elif iptables-legacy -t nat -S >/dev/null 2>&1; then
		IPT=iptables-legacy
	else
		die "cannot read the nat table with iptables or iptables-legacy (is NET_ADMIN granted?): $(iptables -t nat -S 2>&1 | head -n 1)"
	fi
	;;
iptables | iptables-nft | iptables-legacy) ;;
*) die "MESHLET_IPTABLES=\"$IPT\": expected iptables, iptables-nft or iptables-legacy; no rule changed" ;;
esac
command -v "$IPT" >/dev/null 2>&1 || die "$IPT not found (install the iptables package); no rule changed"
command -v "$IPT-restore" >/dev/null 2>&1 || die "$IPT-restore not found (install the iptables package); no rule changed"

has_rule() { # CHAIN ARGS...: whether the nat table holds exactly this rule
	"$IPT" -w -t nat -C "$@" >/dev/null 2>&1
}

if [ "$MODE" = cleanup ]; then
	while has_rule PREROUTING -p tcp -j "$IN_CHAIN"; do "$IPT" -w -t nat -D PREROUTING -p tcp -j "$IN_CHAIN"; done
	while has_rule OUTPUT -p tcp -j "$OUT_CHAIN"; do "$IPT" -w -t nat -D OUTPUT -p tcp -j "$OUT_CHAIN"; done
	for c in "$IN_CHAIN" "$OUT_CHAIN"; do
		if "$IPT" -w -t nat -S "$c" >/dev/null 2>&1; then
			"$IPT" -w -t nat -F "$c"
			"$IPT" -w -t nat -X "$c"
		fi
	done
	log "removed meshlet's rules ($IPT)"
	exit 0
fi

# Declaring the chains flushes them when they exist (--noflush keeps everything else), so a
# second run rewrites the same rules; the jumps are added only when absent.
RULES=$(mktemp "${TMPDIR:-/tmp}/meshlet-init.XXXXXX")
trap 'rm -f "$RULES"' EXIT
{
	echo "*nat"
	chain_rules
	has_rule PREROUTING -p tcp -j "$IN_CHAIN" || echo "-A PREROUTING -p tcp -j $IN_CHAIN"
	has_rule OUTPUT -p tcp -j "$OUT_CHAIN" || echo "-A OUTPUT -p tcp -j $OUT_CHAIN"
	echo "COMMIT"
} >"$RULES"
if ! out=$("$IPT-restore" -w --noflush <"$RULES" 2>&1); then
	log "$IPT-restore failed, no rule changed: $out"
	log "input was:"
	cat "$RULES" >&2
	exit 1
fi
log "installed ($IPT): outbound TCP -> 127.0.0.1:$OUTBOUND_PORT (except UID $PROXY_UID, loopback, DNS 53${SKIP_OUTBOUND_PORTS:+, ports $SKIP_OUTBOUND_PORTS}${SKIP_OUTBOUND_CIDRS:+, $SKIP_OUTBOUND_CIDRS}); inbound TCP ${INBOUND_PORTS:-(all ports)} -> $INBOUND_PORT${PORT_MAP:+ (by port: $PORT_MAP)}${SKIP_INBOUND_PORTS:+ (except $SKIP_INBOUND_PORTS)}"
"$IPT-save" -t nat | grep -E "^(:|-A) *(PREROUTING|OUTPUT|MESHLET_)" >&2 || true
