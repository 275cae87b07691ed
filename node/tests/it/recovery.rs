//! Restart after a crash between the state commit and the ledger write: the
//! state machine holds heights the ledger index does not; start-up rebuilds
//! them from the stored blocks and the chain goes on, receipts included, and
//! the committed log gets the rebuilt heights back with the next commit.

use palisade_crypto::api::{SubmitResponse, TxStatus};
use palisade_crypto::encode;
use palisade_node::storage::{Batch, Cf};
use palisade_node::NodeStore;

use super::cluster::Cluster;
use super::http::get_json;
use super::state_store::register;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_between_state_and_ledger_writes_rebuilds_its_ledger() {
    let mut c = Cluster::start(1).await;
    let (_, resp) = c
        .submit(
            0,
            &register(&c.genesis.hash(), &c.service, 0, "api", "r1"),
            true,
        )
        .await;
    assert_eq!(resp.status, TxStatus::Committed);
    let h = c
        .wait_height(0, resp.receipt.as_ref().unwrap().height + 2)
        .await;
    c.stop(0).await;
    let top = {
        let store = NodeStore::open_rocks(&c.configs[0].data_dir.join("db")).unwrap();
        let top = store.committed_height().unwrap();
        assert!(top >= h);
        // Undo the ledger write of the last two heights, as if the process
        // died after the state commit; their blocks are still stored then.
        let mut batch = Batch::new();
        for height in top - 1..=top {
            let logged = store.committed_block(height).unwrap().unwrap();
            store.put_pending_block(&logged.block).unwrap();
            batch.delete(Cf::Infos, height.to_be_bytes().to_vec());
            batch.delete(Cf::Certs, height.to_be_bytes().to_vec());
            // The committed log is written unsynced just before the ledger:
            // it died with it.
            batch.delete(Cf::Log, height.to_be_bytes().to_vec());
        }
        // And a leftover of an old round: a stored block far below the root,
        // which recovery does not hand to the replica.
        let old = store.committed_block(1).unwrap().unwrap();
        store.put_pending_block(&old.block).unwrap();
        batch.put(Cf::Meta, b"committed_height".to_vec(), encode(&(top - 2)));
        store.kv().write(batch, true).unwrap();
        assert_eq!(store.committed_height().unwrap(), top - 2);
        top
    };
    c.restart(0).await;
    c.wait_height(0, top + 2).await;
    let again: SubmitResponse = get_json(c.api(0), &format!("/v1/tx/{}", resp.tx_id), 200).await;
    assert_eq!(again.status, TxStatus::Committed);
    c.stop(0).await;
    // Committed blocks leave the uncommitted-block column, including those
    // put there before the restart (the driver learns them at start).
    {
        let store = NodeStore::open_rocks(&c.configs[0].data_dir.join("db")).unwrap();
        let committed = store.committed_height().unwrap();
        assert!(committed >= top + 2);
        let stale: Vec<u64> = store
            .pending_blocks()
            .unwrap()
            .iter()
            .map(|b| b.height)
            .filter(|h| *h <= committed)
            .collect();
        assert!(
            stale.is_empty(),
            "committed heights still stored as pending: {stale:?}"
        );
        // The committed log (history for sync and audits) has every height
        // again: the rebuilt ones got the next batch's commit QC.
        let missing: Vec<u64> = (1..=committed)
            .filter(|h| store.committed_block(*h).unwrap().is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "committed log lacks heights {missing:?}"
        );
    }
    c.shutdown().await;
}

/// Restart after a crash that lost the last state commits (they are written
/// without the WAL; a kill -9 loses what no flush persisted) while the
/// ledger, the committed log and the receipts' announcement survived: the
/// state is below the ledger. Start-up executes the committed blocks above
/// it again (their results must match the ledger's block infos), the
/// receipts come back, and the chain goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_state_lost_its_last_commits_executes_them_again() {
    use palisade_consensus::state::CommitMeta;
    let mut c = Cluster::start(1).await;
    // A first registration, so the one whose commit is lost is above height 1.
    let (_, first) = c
        .submit(
            0,
            &register(&c.genesis.hash(), &c.service, 0, "api", "r0"),
            true,
        )
        .await;
    assert_eq!(first.status, TxStatus::Committed);
    let (_, resp) = c
        .submit(
            0,
            &register(&c.genesis.hash(), &c.service, 1, "api", "r1"),
            true,
        )
        .await;
    assert_eq!(resp.status, TxStatus::Committed);
    let at = resp.receipt.as_ref().unwrap().height;
    assert!(at >= 2);
    c.wait_height(0, at + 2).await;
    c.stop(0).await;
    let top = {
        let store = NodeStore::open_rocks(&c.configs[0].data_dir.join("db")).unwrap();
        let top = store.committed_height().unwrap();
        assert!(top > at);
        // The state as a crash leaves it when the last flush was before
        // the transaction's height: its commit record names `at - 1`, and
        // the height records, receipts and change index above are gone
        // (tree nodes of later versions may remain: the families are
        // flushed one by one, so they can hold more; executing again
        // rewrites them identically).
        let below = store.block_info(at - 1).unwrap().unwrap();
        let epoch = match store.committed_block(at - 1).unwrap() {
            Some(logged) => logged.block.epoch,
            None => 0,
        };
        let meta = CommitMeta {
            block_id: below.block_id,
            height: below.height,
            epoch,
            timestamp_ms: below.timestamp_ms,
            state_root: below.state_root,
            tx_root: below.tx_root,
        };
        let mut batch = Batch::new();
        for height in at..=top {
            if let Some(record) = store.height_record(height).unwrap() {
                for id in record.tx_ids {
                    batch.delete(Cf::Receipts, id.0.to_vec());
                }
            }
            batch.delete(Cf::Heights, height.to_be_bytes().to_vec());
            batch.delete(Cf::Changes, height.to_be_bytes().to_vec());
        }
        batch.put(Cf::Meta, b"state_last_commit".to_vec(), encode(&meta));
        store.kv().write(batch, true).unwrap();
        assert_eq!(store.state_height().unwrap(), Some(at - 1));
        assert!(store.tx_location(&resp.tx_id).unwrap().is_none());
        top
    };
    c.restart(0).await;
    c.wait_height(0, top + 2).await;
    let again: SubmitResponse = get_json(c.api(0), &format!("/v1/tx/{}", resp.tx_id), 200).await;
    assert_eq!(again.status, TxStatus::Committed);
    assert_eq!(again.receipt.as_ref().map(|r| r.height), Some(at));
    c.stop(0).await;
    {
        let store = NodeStore::open_rocks(&c.configs[0].data_dir.join("db")).unwrap();
        for height in at..=top {
            assert!(
                store.height_record(height).unwrap().is_some(),
                "height record {height} rebuilt"
            );
        }
        // The ledger ran on; the state opens at its durable mark, at least
        // the height the restart executed up to and flushed.
        assert!(store.committed_height().unwrap() >= top + 2);
        assert!(store.state_height().unwrap().unwrap() >= top);
    }
    c.shutdown().await;
}
