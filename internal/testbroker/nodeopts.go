package testbroker

import "strings"

// NodeOptions configures a private node started with StartNodeWith. The zero
// value is StartNode's node.
type NodeOptions struct {
	// ExtraConfig is appended to the node's rabbitmq.conf (new-style sysctl
	// format), e.g. "consumer_timeout = 3000". It must not set the listeners,
	// which the node owns.
	ExtraConfig string
	// AdditionalErlArgs is appended to RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS,
	// e.g. "-rabbit channel_tick_interval 1000" to set an application
	// environment key that rabbitmq.conf does not expose.
	AdditionalErlArgs string
}

func (o NodeOptions) confLines() string {
	s := strings.TrimSpace(o.ExtraConfig)
	if s == "" {
		return ""
	}
	return "# NodeOptions.ExtraConfig\n" + s + "\n"
}

func (o NodeOptions) erlArgs() string {
	s := strings.TrimSpace(o.AdditionalErlArgs)
	if s == "" {
		return ""
	}
	return " " + s
}
