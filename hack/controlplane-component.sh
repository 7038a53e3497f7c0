#!/usr/bin/env bash
# Kill, start or restart one component of a control plane started by hack/controlplane-up.sh,
# with the same flags, ports and data directory (hack/components.sh), for the fault tests.
#
#   hack/controlplane-component.sh STATE_DIR kill|stop|start|restart|freeze|thaw etcd|kube-apiserver|kube-controller-manager
#
#   kill     SIGKILL (a crash), wait until it is gone
#   stop     SIGTERM (a graceful stop), wait until it is gone
#   start    start it again and wait until it serves
#   restart  kill, then start
#   freeze   SIGSTOP: it keeps its connections and answers nothing (a hung disk, a paused VM)
#   thaw     SIGCONT, after a freeze
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=components.sh
source "$HACK_DIR/components.sh"

[ $# = 3 ] || die "usage: $0 STATE_DIR kill|stop|start|restart|freeze|thaw COMPONENT"
load_config "$1"
action=$2 name=$3
component_command "$name" >/dev/null  # an unknown name fails here
case $action in
  kill) component_stop "$name" KILL ;;
  stop) component_stop "$name" TERM ;;
  start) component_start "$name" && component_wait_ready "$name" 90 ;;
  restart) component_stop "$name" KILL && component_start "$name" && component_wait_ready "$name" 90 ;;
  freeze | thaw)
    pid=$(component_pid "$name")
    if [ -z "$pid" ] || ! pid_alive "$pid"; then die "$name is not running"; fi
    signal=STOP && [ "$action" = thaw ] && signal=CONT
    echo "=== $(date -u +%FT%T.%NZ) sending SIG$signal to $name" >>"$STATE/logs/$name.log"
    kill "-$signal" -- "-$pid"
    ;;
  *) die "unknown action '$action' (kill, stop, start, restart, freeze or thaw)" ;;
esac
log "$name: $action done"
