package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// The REST tests validate requests and responses against api/openapi.yaml.
// OpenAPI 3.1 schemas are JSON Schema 2020-12, so the document is loaded as
// one JSON resource and each operation's schema is compiled by its JSON
// pointer with santhosh-tekuri/jsonschema (a full 2020-12 validator); the
// OpenAPI-specific parts (paths, statuses) are looked up here.

const specURL = "file:///openapi.json"

var spec struct {
	once sync.Once
	doc  map[string]any
	c    *jsonschema.Compiler
	err  error
	mu   sync.Mutex
	memo map[string]*jsonschema.Schema
}

func loadSpec(t testing.TB) {
	spec.once.Do(func() {
		raw, err := os.ReadFile("../api/openapi.yaml")
		if err != nil {
			spec.err = err
			return
		}
		var y any
		if spec.err = yaml.Unmarshal(raw, &y); spec.err != nil {
			return
		}
		// YAML → JSON → the validator's JSON values.
		j, err := json.Marshal(y)
		if err != nil {
			spec.err = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		if err != nil {
			spec.err = err
			return
		}
		spec.doc = doc.(map[string]any)
		spec.c = jsonschema.NewCompiler()
		spec.c.DefaultDraft(jsonschema.Draft2020)
		spec.err = spec.c.AddResource(specURL, doc)
		spec.memo = map[string]*jsonschema.Schema{}
	})
	if spec.err != nil {
		t.Fatalf("loading api/openapi.yaml: %v", spec.err)
	}
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// schemaAt compiles the schema at JSON pointer ptr of the document.
func schemaAt(t testing.TB, ptr string) *jsonschema.Schema {
	t.Helper()
	spec.mu.Lock()
	defer spec.mu.Unlock()
	if s := spec.memo[ptr]; s != nil {
		return s
	}
	s, err := spec.c.Compile(specURL + "#" + ptr)
	if err != nil {
		t.Fatalf("compiling %s: %v", ptr, err)
	}
	spec.memo[ptr] = s
	return s
}

// operation returns the path item operation of method on template.
func operation(t testing.TB, method, template string) map[string]any {
	t.Helper()
	paths := spec.doc["paths"].(map[string]any)
	item, ok := paths[template].(map[string]any)
	if !ok {
		t.Fatalf("openapi.yaml has no path %s", template)
	}
	op, ok := item[strings.ToLower(method)].(map[string]any)
	if !ok {
		t.Fatalf("openapi.yaml has no %s %s", method, template)
	}
	return op
}

func validate(t testing.TB, what string, s *jsonschema.Schema, body []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: not JSON: %v: %s", what, err, body)
	}
	if err := s.Validate(v); err != nil {
		t.Fatalf("%s does not match api/openapi.yaml: %v\n%s", what, err, body)
	}
}

// checkRequest validates a request body against the operation's schema.
func checkRequest(t testing.TB, method, template string, body []byte) {
	t.Helper()
	loadSpec(t)
	operation(t, method, template)
	ptr := "/paths/" + pointerEscape(template) + "/" + strings.ToLower(method) + "/requestBody/content/application~1json/schema"
	validate(t, "request "+method+" "+template, schemaAt(t, ptr), body)
}

// checkResponse validates a response against the operation's declared
// response for its status (or default), resolving a $ref'd response.
func checkResponse(t testing.TB, method, template string, status int, body []byte) {
	t.Helper()
	loadSpec(t)
	op := operation(t, method, template)
	resps := op["responses"].(map[string]any)
	key := strconv.Itoa(status)
	r, ok := resps[key]
	if !ok {
		if status < 400 {
			t.Fatalf("%s %s: status %d is not documented", method, template, status)
		}
		key, r = "default", resps["default"]
	}
	base := "/paths/" + pointerEscape(template) + "/" + strings.ToLower(method) + "/responses/" + key
	if ref, ok := r.(map[string]any)["$ref"].(string); ok {
		base = strings.TrimPrefix(ref, "#")
	}
	validate(t, fmt.Sprintf("response %d of %s %s", status, method, template), schemaAt(t, base+"/content/application~1json/schema"), body)
}

// rest calls the REST API with the admin token (tok "" ) or tok ("-" for
// none), validating the response against the spec (and the request too
// when want is 200). It fails unless the status is want, and returns the
// decoded body.
func (ts *testServer) rest(t testing.TB, method, template, path string, body any, tok string, want int) map[string]any {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
		if s, ok := body.(string); ok {
			raw = []byte(s)
		}
		if want == http.StatusOK {
			checkRequest(t, method, template, raw)
		}
	}
	status, out, _ := ts.restRaw(t, method, path, raw, tok)
	checkResponse(t, method, template, status, out)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, status, out, want)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return m
}

func (ts *testServer) restRaw(t testing.TB, method, path string, body []byte, tok string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+ts.addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok == "" {
		tok = ts.token("administrator")
	}
	if tok != "-" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out, resp.Header
}
