package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestSwaggerDocumentsEveryRoute(t *testing.T) {
	var spec struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(swaggerSpec, &spec); err != nil {
		t.Fatalf("swagger.json: %v", err)
	}
	var documented []string
	for path, ops := range spec.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	var served []string
	for _, rt := range apiRoutes {
		served = append(served, rt.pattern)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("swagger.json documents\n  %s\nbut the service serves\n  %s", strings.Join(documented, "\n  "), strings.Join(served, "\n  "))
	}
}

func TestSwaggerExampleIsAValidOrder(t *testing.T) {
	var spec struct {
		Components struct {
			Schemas struct {
				Order struct {
					Example json.RawMessage `json:"example"`
				}
			}
		}
	}
	if err := json.Unmarshal(swaggerSpec, &spec); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeOrder(spec.Components.Schemas.Order.Example); err != nil {
		t.Errorf("the Order example in swagger.json is rejected: %v", err)
	}
}
