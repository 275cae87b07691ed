//! `node/API.md` is tested: every `curl` line in it runs verbatim (through
//! bash, with `NODE`, `KEY`, `TX` and `TX_ID` set) against a real node, and
//! its answer must carry what the line below it promises (`# fields:` keys
//! of the JSON object, `# events:` SSE event names, `# text:` a substring).

use std::path::Path;
use std::process::Command;

use palisade_crypto::Hex;

use super::cluster::Cluster;
use super::state_store::register;

/// One documented command and what its answer must show.
struct Example {
    line: usize,
    command: String,
    expect: Expect,
}

enum Expect {
    Fields(Vec<String>),
    Events(Vec<String>),
    Text(String),
}

fn examples(doc: &str) -> Vec<Example> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("curl ") {
            continue;
        }
        let next = lines.get(i + 1).copied().unwrap_or_default();
        let list =
            |rest: &str| -> Vec<String> { rest.split(',').map(|f| f.trim().to_string()).collect() };
        let expect = if let Some(rest) = next.strip_prefix("# fields:") {
            Expect::Fields(list(rest))
        } else if let Some(rest) = next.strip_prefix("# events:") {
            Expect::Events(list(rest))
        } else if let Some(rest) = next.strip_prefix("# text:") {
            Expect::Text(rest.trim().to_string())
        } else {
            panic!(
                "API.md line {}: a curl example without `# fields:`, `# events:` or `# text:` under it",
                i + 1
            );
        };
        out.push(Example {
            line: i + 1,
            command: line.to_string(),
            expect,
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_curl_example_in_api_md_works_against_a_real_node() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("API.md");
    let doc = std::fs::read_to_string(&doc_path).expect("node/API.md");
    let examples = examples(&doc);
    assert!(
        examples.len() >= 10,
        "found only {} examples",
        examples.len()
    );

    let c = Cluster::start(1).await;
    c.wait_height(0, 1).await;
    let first = register(&c.genesis.hash(), &c.service, 0, "api", "api-1");
    let (_, answer) = c.submit(0, &first, true).await;
    let tx_id = answer.tx_id;
    c.wait_receipt(0, &tx_id).await;
    // The documented POST submits this one.
    let next = register(&c.genesis.hash(), &c.service, 1, "api", "api-2");
    let node = format!("http://{}", c.api(0));
    let key = c.service.public().to_string();
    let tx = hex::encode(Hex::new(&next).bytes());

    for ex in &examples {
        let cmd = ex.command.clone();
        let (node, key, tx, tx_id) = (node.clone(), key.clone(), tx.clone(), tx_id.to_string());
        let output = tokio::task::spawn_blocking(move || {
            Command::new("bash")
                .args(["-c", &format!("set -o pipefail; {cmd}")])
                .env("NODE", node)
                .env("KEY", key)
                .env("TX", tx)
                .env("TX_ID", tx_id)
                .output()
                .expect("bash runs")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let code = output.status.code();
        // A stream example ends by its own `--max-time` (curl's exit 28).
        let timed_out = code == Some(28) && ex.command.contains("--max-time");
        assert!(
            output.status.success() || timed_out,
            "API.md line {}: `{}` exited {:?}: {}{}",
            ex.line,
            ex.command,
            code,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        match &ex.expect {
            Expect::Fields(fields) => {
                let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
                    panic!("API.md line {}: not JSON ({e}): {stdout}", ex.line)
                });
                for f in fields {
                    assert!(
                        json.get(f).is_some(),
                        "API.md line {}: no field `{f}` in {stdout}",
                        ex.line
                    );
                }
            }
            Expect::Events(events) => {
                for e in events {
                    assert!(
                        stdout.contains(&format!("event: {e}")),
                        "API.md line {}: no `{e}` event in {stdout}",
                        ex.line
                    );
                }
            }
            Expect::Text(text) => assert!(
                stdout.contains(text.as_str()),
                "API.md line {}: no `{text}` in the answer",
                ex.line
            ),
        }
    }

    // The decoded halves say what the proof material says.
    let lookup: serde_json::Value =
        super::http::get_json(c.api(0), "/v1/services/prod/api", 200).await;
    let instances = &lookup["record"]["instances"];
    assert_eq!(instances.as_array().map(Vec::len), Some(2), "{lookup}");
    // Labels read as a map, as a person writes them (`{"zone": "a"}`).
    assert!(instances[0]["labels"].is_object(), "{lookup}");
    assert_eq!(
        lookup["certified"]["signers"].as_array().map(Vec::len),
        Some(1)
    );
    let receipt = c.wait_receipt(0, &tx_id).await.receipt.expect("receipt");
    let height = receipt.height;
    let block: serde_json::Value =
        super::http::get_json(c.api(0), &format!("/v1/blocks/{height}"), 200).await;
    let txs = block["transactions"].as_array().expect("transactions");
    let listed = txs
        .iter()
        .find(|t| t["id"] == serde_json::json!(tx_id))
        .unwrap_or_else(|| panic!("{tx_id} not in block {height}: {block}"));
    assert_eq!(listed["kind"], "register");
    assert_eq!(listed["target"], "prod/api/api-1");
    assert_eq!(listed["outcome"], "applied");
    assert_eq!(block["info"]["height"], height);
    c.shutdown().await;
}
