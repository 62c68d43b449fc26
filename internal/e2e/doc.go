// Package e2e holds warren's end-to-end tests: the real bin/api and bin/worker,
// built from this tree, against a real RabbitMQ in a vhost of their own. Every API
// response a test receives is also checked against the OpenAPI document.
package e2e
