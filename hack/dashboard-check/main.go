// Command dashboard-check validates Grafana dashboards with the Grafana Foundation SDK (the
// types Grafana's own schema generates): a strict decode, so that a misspelt or unknown field of
// the dashboard, a panel, its options or its field config is an error, then Validate() of the
// dashboard and, per panel type, of each panel's options and custom field config. Grafana
// itself cannot be built here (its modules are AGPL and not served); this is what a
// dashboard's JSON must satisfy to load the way it was written.
//
//	dashboard-check FILE...
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

type validator interface{ Validate() error }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashboard-check FILE...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, file := range os.Args[1:] {
		if err := check(file); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func check(file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var board dashboard.Dashboard
	if err := board.UnmarshalJSONStrict(raw); failed(err) {
		return fmt.Errorf("strict decode: %w", err)
	}
	if err := board.Validate(); failed(err) {
		return fmt.Errorf("dashboard: %w", err)
	}
	// Panels are decoded again one by one: the SDK's PanelOrRowPanel drops a panel that
	// decoded without error (its decoder returns the empty error list as an error), so
	// board.Panels holds no panel to validate.
	var layout struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &layout); err != nil {
		return err
	}
	panels := 0
	for len(layout.Panels) > 0 {
		rawPanel := layout.Panels[0]
		layout.Panels = layout.Panels[1:]
		var row struct {
			Type   string            `json:"type"`
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(rawPanel, &row); err != nil {
			return err
		}
		if row.Type == "row" {
			layout.Panels = append(layout.Panels, row.Panels...)
			continue
		}
		var panel dashboard.Panel
		if err := panel.UnmarshalJSONStrict(rawPanel); failed(err) {
			return fmt.Errorf("panel %d: %w", panels, err)
		}
		panels++
		if err := checkPanel(&panel, rawPanel); err != nil {
			return fmt.Errorf("panel %q (%s): %w", title(&panel), panel.Type, err)
		}
	}
	fmt.Printf("%s: %d panels valid\n", file, panels)
	return nil
}

func checkPanel(panel *dashboard.Panel, raw json.RawMessage) error {
	if err := panel.Validate(); failed(err) {
		return err
	}
	if _, known := cog.ConfigForPanelcfgVariant(panel.Type); !known {
		return fmt.Errorf("unknown panel type %q", panel.Type)
	}
	if panel.Options != nil {
		if options, ok := panel.Options.(validator); ok {
			if err := options.Validate(); failed(err) {
				return fmt.Errorf("options: %w", err)
			}
		}
	}
	// The SDK decodes fieldConfig leniently (only its custom part strictly): decode it again,
	// refusing unknown fields, so that a misspelt unit or threshold is caught too.
	var fields struct {
		FieldConfig json.RawMessage `json:"fieldConfig"`
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	if len(fields.FieldConfig) > 0 && string(fields.FieldConfig) != "null" {
		decoder := json.NewDecoder(bytes.NewReader(fields.FieldConfig))
		decoder.DisallowUnknownFields()
		var source dashboard.FieldConfigSource
		if err := decoder.Decode(&source); err != nil {
			return fmt.Errorf("fieldConfig: %w", err)
		}
	}
	if panel.FieldConfig != nil && panel.FieldConfig.Defaults.Custom != nil {
		if custom, ok := panel.FieldConfig.Defaults.Custom.(validator); ok {
			if err := custom.Validate(); failed(err) {
				return fmt.Errorf("fieldConfig.defaults.custom: %w", err)
			}
		}
	}
	return nil
}

// failed: whether err reports a problem. The SDK's strict decoders return their error list as
// it is, so an empty cog.BuildErrors (a non-nil error value) means success.
func failed(err error) bool {
	var list cog.BuildErrors
	if errors.As(err, &list) {
		return len(list) > 0
	}
	return err != nil
}

func title(panel *dashboard.Panel) string {
	if panel.Title == nil {
		return ""
	}
	return *panel.Title
}
