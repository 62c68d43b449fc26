#!/bin/sh
# RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS, as the upstream image honours them:
# the user the broker creates when it boots on an empty data directory.
set -e
conf=/etc/rabbitmq/conf.d/05-default-user.conf
: >"$conf"
if [ -n "$RABBITMQ_DEFAULT_USER" ]; then
	echo "default_user = $RABBITMQ_DEFAULT_USER" >>"$conf"
fi
if [ -n "$RABBITMQ_DEFAULT_PASS" ]; then
	echo "default_pass = $RABBITMQ_DEFAULT_PASS" >>"$conf"
fi
exec "$@"
