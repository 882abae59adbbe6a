// The Lua test harness for Argo CD health checks (see main.go). Built and cached by ../build.sh.
module apptopology.local/tests/argocd/luaharness

go 1.23

require (
	github.com/yuin/gopher-lua v1.1.2
	sigs.k8s.io/yaml v1.4.0
)
