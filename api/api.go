// Package api embeds the OpenAPI description of the gateway's HTTP API, served by the gateway at
// GET /api/v1/openapi.yaml and checked against its routes by the gateway's tests.
package api

import _ "embed"

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document (YAML). The returned slice is shared: do not modify it.
func OpenAPI() []byte { return openAPI }
