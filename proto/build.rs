//! Generates the tonic (and, under `--cfg madsim`, madsim-tonic) code for RaftMQ's protos.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The machine has no protoc; use the vendored binary. Edition 2024 marks set_var unsafe:
    // this runs single-threaded in the build script before anything reads the environment.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    unsafe { std::env::set_var("PROTOC", protoc) };
    madsim_tonic_build::configure()
        .bytes([".raftmq.raft"])
        .compile_protos(&["proto/raftmq/raft.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
