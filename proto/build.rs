//! Generates the tonic (and, under `--cfg madsim`, madsim-tonic) code for RaftMQ's protos.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The machine has no protoc; use the vendored binary and its well-known-type includes.
    // Edition 2024 marks set_var unsafe: this runs single-threaded before anything reads it.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let wkt = protoc_bin_vendored::include_path()?;
    unsafe { std::env::set_var("PROTOC", protoc) };
    madsim_tonic_build::configure()
        .bytes([".raftmq.raft", ".apache.rocketmq.v2.Message.body"])
        .compile_protos(
            &[
                "proto/raftmq/raft.proto",
                "proto/raftmq/admin.proto",
                "proto/raftmq/forward.proto",
                "proto/raftmq/nameserver.proto",
                "proto/apache/rocketmq/v2/service.proto",
            ],
            &[std::path::PathBuf::from("proto"), wkt],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
