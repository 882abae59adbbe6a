// Command argocd-lua-health runs Argo CD resource health checks (health.lua) under the Lua VM Argo CD
// embeds, gopher-lua, with the environment an argocd-cm script gets:
//
//   - only the package, base and table libraries are opened (Argo CD creates the state with
//     SkipOpenLibs unless resource.customizations.useOpenLibs.<group>_<kind> is true);
//   - "os" is not a global; require("os") returns a module with only time and date (Argo CD's safe
//     os, preloaded). Argo CD's loop also calls its safe-os opener, but that registers under the
//     table library's name, which is already loaded, so it adds nothing: reproduced here by effect;
//   - the object is the global obj (JSON numbers as Lua numbers); the script runs with a one-second
//     deadline and must return a table whose status is Healthy, Progressing, Degraded, Suspended,
//     Missing or Unknown (anything else becomes Unknown, "Lua returned an invalid health status").
//
// -open-libs gives the environment of Argo CD's built-in scripts and of its own test suite (every
// gopher-lua library opened first), so a check can be shown to work in both.
//
// Usage:
//
//	argocd-lua-health [-open-libs] eval SCRIPT OBJECT.yaml
//	    prints the health as JSON {"status": ..., "message": ...}; exit 1 when the script fails
//	    (Argo CD then shows Unknown with the error)
//	argocd-lua-health [-open-libs] test DIR
//	    Argo CD's own test layout: every health.lua under DIR with the health_test.yaml beside it
//	    ({tests: [{healthStatus: {status, message}, inputPath}]}); prints one JSON line per test and
//	    exits 1 when any result differs from the expected one
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// Health is what Argo CD keeps of a health script's result.
type Health struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

func newState(openLibs bool) *lua.LState {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		l.Push(l.SetFuncs(l.NewTable(), map[string]lua.LGFunction{"time": osTime, "date": osDate}))
		return 1
	})
	return l
}

// osTime: os.time() or os.time{year=, month=, day=, hour=, min=, sec=}.
func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := l.CheckTable(1)
	field := func(name string, def int) int {
		if n, ok := t.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	at := time.Date(field("year", 1970), time.Month(field("month", 1)), field("day", 1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(at.Unix()))
	return 1
}

// osDate: os.date([format [, seconds]]) with "!" for UTC, "*t" for a table, and the common % flags.
func osDate(l *lua.LState) int {
	format := l.OptString(1, "%c")
	at := time.Now()
	if l.GetTop() >= 2 {
		at = time.Unix(l.CheckInt64(2), 0)
	}
	if strings.HasPrefix(format, "!") {
		at, format = at.UTC(), format[1:]
	}
	if strings.HasPrefix(format, "*t") {
		t := l.NewTable()
		for name, value := range map[string]int{"year": at.Year(), "month": int(at.Month()), "day": at.Day(),
			"hour": at.Hour(), "min": at.Minute(), "sec": at.Second(), "wday": int(at.Weekday()) + 1, "yday": at.YearDay()} {
			t.RawSetString(name, lua.LNumber(value))
		}
		t.RawSetString("isdst", lua.LFalse)
		l.Push(t)
		return 1
	}
	layouts := map[byte]string{'Y': "2006", 'm': "01", 'd': "02", 'H': "15", 'M': "04", 'S': "05",
		'y': "06", 'b': "Jan", 'B': "January", 'a': "Mon", 'A': "Monday", 'p': "PM", 'Z': "MST", 'z': "-0700",
		'c': "Mon Jan  2 15:04:05 2006", 'x': "01/02/06", 'X': "15:04:05"}
	var out strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			out.WriteByte(format[i])
			continue
		}
		i++
		if layout, ok := layouts[format[i]]; ok {
			out.WriteString(at.Format(layout))
		} else {
			out.WriteByte('%')
			out.WriteByte(format[i])
		}
	}
	l.Push(lua.LString(out.String()))
	return 1
}

// toLua converts a decoded JSON value the way Argo CD hands objects to scripts.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetString(key, toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

// fromLua converts a returned table to JSON-able values: a table with only keys 1..n (or none) is an
// array, any other table an object, as a JSON encoder for Lua values does.
func fromLua(value lua.LValue, depth int) (any, error) {
	if depth > 100 {
		return nil, errors.New("nested too deeply")
	}
	switch v := value.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(v), nil
	case lua.LNumber:
		return float64(v), nil
	case lua.LString:
		return string(v), nil
	case *lua.LTable:
		if n := v.MaxN(); n > 0 || isEmpty(v) {
			items := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				item, err := fromLua(v.RawGetInt(i), depth+1)
				if err != nil {
					return nil, err
				}
				items = append(items, item)
			}
			return items, nil
		}
		object := map[string]any{}
		var err error
		v.ForEach(func(key, item lua.LValue) {
			if err != nil {
				return
			}
			name, ok := key.(lua.LString)
			if !ok {
				err = fmt.Errorf("cannot encode a table key of type %s", key.Type())
				return
			}
			object[string(name)], err = fromLua(item, depth+1)
		})
		return object, err
	}
	return nil, fmt.Errorf("cannot encode a value of type %s", value.Type())
}

func isEmpty(t *lua.LTable) bool {
	key, _ := t.Next(lua.LNil)
	return key == lua.LNil
}

// Evaluate runs a health script on an object as Argo CD does.
func Evaluate(script string, object map[string]any, openLibs bool) (Health, error) {
	l := newState(openLibs)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, object))
	if err := l.DoString(script); err != nil {
		return Health{}, err
	}
	returned := l.Get(-1)
	if returned.Type() != lua.LTTable {
		return Health{}, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	plain, err := fromLua(returned, 0)
	if err != nil {
		return Health{}, err
	}
	encoded, err := json.Marshal(plain)
	if err != nil {
		return Health{}, err
	}
	var health Health
	if err := json.Unmarshal(encoded, &health); err != nil {
		return Health{}, err
	}
	if !validStatus[health.Status] {
		return Health{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return health, nil
}

func readObject(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	object := map[string]any{}
	if err := yaml.Unmarshal(data, &object); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return object, nil
}

type testFile struct {
	Tests []struct {
		HealthStatus Health `json:"healthStatus"`
		InputPath    string `json:"inputPath"`
	} `json:"tests"`
}

type testResult struct {
	Script   string  `json:"script"`
	Input    string  `json:"inputPath"`
	Expected Health  `json:"expected"`
	Actual   *Health `json:"actual,omitempty"`
	Error    string  `json:"error,omitempty"`
	Pass     bool    `json:"pass"`
}

// runTests walks dir like Argo CD's TestLuaHealthScript: each health.lua with its health_test.yaml.
func runTests(dir string, openLibs bool) ([]testResult, error) {
	var scripts []string
	err := filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err == nil && !entry.IsDir() && entry.Name() == "health.lua" {
			scripts = append(scripts, path)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(scripts) == 0 {
		return nil, fmt.Errorf("no health.lua under %s", dir)
	}
	sort.Strings(scripts)
	var results []testResult
	for _, scriptPath := range scripts {
		script, err := os.ReadFile(scriptPath)
		if err != nil {
			return nil, err
		}
		specPath := filepath.Join(filepath.Dir(scriptPath), "health_test.yaml")
		data, err := os.ReadFile(specPath)
		if err != nil {
			return nil, err
		}
		var spec testFile
		if err := yaml.UnmarshalStrict(data, &spec); err != nil {
			return nil, fmt.Errorf("%s: %w", specPath, err)
		}
		if len(spec.Tests) == 0 {
			return nil, fmt.Errorf("%s: no tests", specPath)
		}
		for _, test := range spec.Tests {
			result := testResult{Script: scriptPath, Input: test.InputPath, Expected: test.HealthStatus}
			object, err := readObject(filepath.Join(filepath.Dir(scriptPath), test.InputPath))
			if err != nil {
				return nil, err
			}
			health, err := Evaluate(string(script), object, openLibs)
			if err != nil {
				result.Error = err.Error()
			} else {
				result.Actual = &health
				result.Pass = health == test.HealthStatus
			}
			results = append(results, result)
		}
	}
	return results, nil
}

func main() {
	openLibs := flag.Bool("open-libs", false, "open every library (Argo CD's built-in scripts and its test suite)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua-health [-open-libs] eval SCRIPT OBJECT.yaml | test DIR")
	}
	flag.Parse()
	args := flag.Args()
	switch {
	case len(args) == 3 && args[0] == "eval":
		script, err := os.ReadFile(args[1])
		if err == nil {
			var object map[string]any
			if object, err = readObject(args[2]); err == nil {
				var health Health
				if health, err = Evaluate(string(script), object, *openLibs); err == nil {
					out, _ := json.Marshal(health)
					fmt.Println(string(out))
					return
				}
			}
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case len(args) == 2 && args[0] == "test":
		results, err := runTests(args[1], *openLibs)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		failed := false
		for _, result := range results {
			out, _ := json.Marshal(result)
			fmt.Println(string(out))
			failed = failed || !result.Pass
		}
		if failed {
			os.Exit(1)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}
