package model

// RequestMessage is the JSON body of a sync request message (schema version 1).
type RequestMessage struct {
	Data string `json:"data"`
}
