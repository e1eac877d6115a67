"""Runs last: across everything the suite threw at them, no Envoy's wasm VM
failed (a panic or trap would have been counted as a reload)."""


def test_no_wasm_vm_failed(stack):
    for envoy in stack.envoys:
        if envoy.proc.poll() is not None:
            continue
        reloads = {name: v for name, v in envoy.stats("vm_reload").items() if v}
        assert reloads == {}, f"{envoy.name}: {reloads}"
        assert envoy.stats("wasm.envoy.wasm.runtime.v8.active"), "VMs are alive"
