#!/bin/sh
# Take the README's screenshot on a machine with no display: a virtual X server of its own,
# the window on a free port with the seed strategy, three loads (rr x 24, slow x 4, churn x 6),
# a shot of the window once it is up and the loads have run a few seconds, then
# everything stopped in order (the loads, the window, the X server), whatever happens.
#
#   scripts/screenshot.sh [OUT.png]        (default: screenshot.png in the current directory)
#
# Needs Xvfb, ImageMagick's import and xwininfo:
#   apt-get install -y xvfb imagemagick x11-utils
# Environment: LOOPMON (the command, default .venv/bin/loopmon), SIZE (1600x1000),
# SETTLE (seconds of load before the shot, 6).
set -eu

out=${1:-screenshot.png}
loopmon=${LOOPMON:-.venv/bin/loopmon}
size=${SIZE:-1600x1000}
settle=${SETTLE:-6}

for tool in Xvfb import xwininfo; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "screenshot.sh: $tool not found: apt-get install -y xvfb imagemagick x11-utils" >&2
        exit 2
    }
done
[ -x "$loopmon" ] || command -v "$loopmon" >/dev/null 2>&1 || {
    echo "screenshot.sh: $loopmon not found (set LOOPMON, or run the README's Quick start)" >&2
    exit 2
}

work=$(mktemp -d)
xvfb_pid='' window_pid='' load_pids=''

stop() {
    # Loads first (they print their summaries), then the window (SIGINT closes it as Ctrl+C
    # does, so it shuts its loop down while X is still there), then the X server.
    for pid in $load_pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $load_pids; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$window_pid" ]; then
        kill -INT "$window_pid" 2>/dev/null || true
        wait "$window_pid" 2>/dev/null || true
    fi
    if [ -n "$xvfb_pid" ]; then
        kill -TERM "$xvfb_pid" 2>/dev/null || true
        wait "$xvfb_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM HUP

# A display number nobody uses (its lock file and socket absent).
n=99
while [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ]; do n=$((n + 1)); done
Xvfb ":$n" -screen 0 "${size}x24" -nolisten tcp >"$work/xvfb.log" 2>&1 &
xvfb_pid=$!
export DISPLAY=":$n"
tries=0
until xwininfo -root >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ] || ! kill -0 "$xvfb_pid" 2>/dev/null; then
        echo "screenshot.sh: Xvfb did not start:" >&2
        cat "$work/xvfb.log" >&2
        exit 1
    fi
    sleep 0.1
done

# A free port, so a server already on 10000 does not get in the way.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
unset QT_QPA_PLATFORM
# A throwaway profile: the user's saved window size and choices would change the shot, and the
# window saves its own state when it closes, which would overwrite theirs.
export LOOPMON_SETTINGS="$work/settings.ini"
"$loopmon" --port "$port" --strategy seed >"$work/window.log" 2>&1 &
window_pid=$!
tries=0
until xwininfo -root -tree 2>/dev/null | grep -q '"loopmon'; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ] || ! kill -0 "$window_pid" 2>/dev/null; then
        echo "screenshot.sh: the window did not appear:" >&2
        cat "$work/window.log" >&2
        exit 1
    fi
    sleep 0.1
done

duration=$((settle + 10))  # the loads outlast the shot; stop() ends them
for spec in "rr 24" "slow 4" "churn 6"; do
    set -- $spec
    "$loopmon" load --port "$port" --mode "$1" --clients "$2" --duration "$duration" \
        --progress none >"$work/load-$1.log" 2>&1 &
    load_pids="$load_pids $!"
done
sleep "$settle"
# The window alone (no window manager here: the rest of the screen is black).
window_id=root
for id in $(xwininfo -root -tree | awk '/"loopmon/ { print $1 }'); do
    if xwininfo -id "$id" | grep -q 'IsViewable'; then window_id=$id; break; fi
done
import -window "$window_id" "$out"
echo "screenshot.sh: wrote $out ($size)"
