#!/bin/sh
# The upstream image builds redis with protected mode off (it is reached from other
# containers); Debian's binary has it on, so turn it off unless the command sets it.
set -e
if [ "$1" = redis-server ]; then
	case " $* " in
	*" --protected-mode "*) ;;
	*) set -- "$@" --protected-mode no ;;
	esac
fi
exec "$@"
