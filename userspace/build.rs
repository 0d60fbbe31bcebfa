// Builds the eBPF crate for bpfel-unknown-none with the nightly toolchain and
// bpf-linker (installed by `cargo xtask setup`), so a plain `cargo build`
// produces a userspace binary with the datapath embedded.
fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ebridge-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
