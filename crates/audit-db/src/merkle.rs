//! The log's Merkle tree, RFC 6962: leaves in seq order, leaf hash
//! `SHA-256(0x00 ‖ leaf)`, node hash `SHA-256(0x01 ‖ left ‖ right)`.
//!
//! An append stores every hash that becomes final: the leaf's and those of
//! the subtrees it completes (two per leaf on average), each at its place
//! in one linear numbering ("stored hash index", as Go's checksum database
//! numbers them). The root of any size and inclusion and consistency
//! proofs then read O(log n) stored hashes instead of recomputing anything.
//! The arithmetic is `tlog_tiles`' (a port of Go's `sumdb/tlog`); where the
//! hashes live is the store's business: every operation here first says
//! which stored hashes it needs, the store fetches exactly those, and the
//! operation runs on them in memory.

use std::collections::HashMap;

use tlog_tiles::tlog;

use crate::record::Hash;

/// Stored hashes by stored hash index: what a store fetched for one operation.
pub type Stored = HashMap<u64, Hash>;

/// What a tree operation could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A stored hash the operation needs is missing: the tree is
    /// incomplete or was cut.
    #[error("the Merkle tree lacks stored hash {index}")]
    Missing {
        /// Its stored hash index.
        index: u64,
    },
    /// The sizes or the position asked about do not fit the tree.
    #[error("no such proof: {0}")]
    BadRequest(String),
    /// A proof does not prove what it claims.
    #[error("the proof does not match the root")]
    InvalidProof,
    /// A stored hash is not 32 bytes, or the stored hashes are not those of
    /// any tree size: the tree was edited.
    #[error("the Merkle tree is malformed at stored hash {index}")]
    Malformed {
        /// The stored hash index.
        index: u64,
    },
}

/// The leaf hash of `leaf` (its encoded bytes).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    Hash(tlog::record_hash(leaf).0)
}

/// The stored hashes an append to a tree of `size` leaves reads: its right
/// edge, the roots of its complete subtrees.
pub fn frontier(size: u64) -> Vec<u64> {
    if size == 0 {
        return Vec::new();
    }
    tlog::sub_tree_index(0, size, Vec::new())
}

/// The hashes to store when `leaves` (leaf hashes, in order) are appended
/// to a tree of `size` leaves whose [`frontier`] is in `edge`: (stored hash
/// index, hash) pairs in index order.
pub fn append(size: u64, leaves: &[Hash], edge: &Stored) -> Result<Vec<(u64, Hash)>, MerkleError> {
    let mut known = edge.clone();
    let mut out = Vec::with_capacity(leaves.len() * 2 + 8);
    for (i, leaf) in leaves.iter().enumerate() {
        let n = size + i as u64;
        let first = tlog::stored_hash_index(0, n);
        let reader = Reader::over(&known);
        let hashes = tlog::stored_hashes_for_record_hash(n, tlog::Hash(leaf.0), &reader)
            .map_err(|e| reader.explain(e))?;
        for (k, h) in hashes.into_iter().enumerate() {
            let index = first + k as u64;
            known.insert(index, Hash(h.0));
            out.push((index, Hash(h.0)));
        }
    }
    Ok(out)
}

/// The [`frontier`] of the tree of `new_size` leaves that [`append`] made
/// by storing `nodes` onto `edge`.
pub fn edge_after(new_size: u64, edge: &Stored, nodes: &[(u64, Hash)]) -> Stored {
    frontier(new_size)
        .into_iter()
        .filter_map(|i| {
            let made = nodes
                .binary_search_by_key(&i, |(index, _)| *index)
                .ok()
                .map(|at| nodes[at].1);
            made.or_else(|| edge.get(&i).copied()).map(|h| (i, h))
        })
        .collect()
}

/// The tree's right edge as this process's last append left it, so that
/// the next append need not read it back. Kept by size: when another
/// process has appended since, the head's seq differs and the edge is read
/// from the database again.
#[derive(Clone, Debug, Default)]
pub(crate) struct EdgeCache(std::sync::Arc<std::sync::Mutex<Option<(u64, Stored)>>>);

impl EdgeCache {
    /// The edge of the tree of `size` leaves, if that is the one kept.
    pub(crate) fn take(&self, size: u64) -> Option<Stored> {
        let mut kept = self.0.lock().ok()?;
        match kept.take() {
            Some((at, edge)) if at == size => Some(edge),
            _ => None,
        }
    }

    /// Keeps the edge of the tree of `size` leaves (once it is committed).
    pub(crate) fn put(&self, size: u64, edge: Stored) {
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some((size, edge));
        }
    }
}

/// Where a stored hash is kept when each leaf's row holds the hashes its
/// append stored (the leaf's own first, then one per subtree it
/// completed): the leaf (from 0) and the position in that row.
pub fn placement(index: u64) -> (u64, usize) {
    let (level, k) = tlog::split_stored_hash_index(index);
    (((k + 1) << level) - 1, usize::from(level))
}

/// [`append`]'s hashes as rows: for each new leaf from `size` on, its seq
/// (leaf + 1) and the hashes its append stored, concatenated.
pub fn leaf_rows(size: u64, nodes: &[(u64, Hash)]) -> Vec<(i64, Vec<u8>)> {
    row_spans(size, nodes)
        .map(|(seq, mine)| (seq, mine.iter().flat_map(|(_, h)| h.0).collect()))
        .collect()
}

/// The first seq whose row in `stored` (rows in seq order) is missing or
/// differs from the one [`leaf_rows`] would make of `nodes`; compared in
/// place, for verification.
pub fn first_mismatch(size: u64, nodes: &[(u64, Hash)], stored: &[(i64, Vec<u8>)]) -> Option<i64> {
    let mut rows = stored.iter().peekable();
    row_spans(size, nodes)
        .find(|&(seq, mine)| {
            while rows.next_if(|(s, _)| *s < seq).is_some() {}
            match rows.next_if(|(s, _)| *s == seq) {
                Some((_, bytes)) => {
                    bytes.len() != mine.len() * 32
                        || bytes.chunks(32).zip(mine).any(|(b, (_, h))| b != h.0)
                }
                None => true,
            }
        })
        .map(|(seq, _)| seq)
}

/// `nodes` cut into each new leaf's share: its seq and the hashes its
/// append stored (its own, then one per subtree it completed).
fn row_spans(size: u64, nodes: &[(u64, Hash)]) -> impl Iterator<Item = (i64, &[(u64, Hash)])> {
    let mut rest = nodes;
    let mut leaf = size;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // Leaf n stores its own hash and one per trailing 1 bit of n.
        let count = (1 + (leaf + 1).trailing_zeros() as usize).min(rest.len());
        let (mine, after) = rest.split_at(count);
        rest = after;
        leaf += 1;
        Some((leaf as i64, mine))
    })
}

/// The rows (seq, hashes) that hold the stored hashes at `indexes`.
pub fn rows_for(indexes: &[u64]) -> Vec<i64> {
    let mut seqs: Vec<i64> = indexes.iter().map(|i| placement(*i).0 as i64 + 1).collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// The stored hashes at `indexes` from the rows [`rows_for`] named.
pub fn from_rows(indexes: &[u64], rows: Vec<(i64, Vec<u8>)>) -> Result<Stored, MerkleError> {
    let rows: HashMap<i64, Vec<u8>> = rows.into_iter().collect();
    indexes
        .iter()
        .map(|&index| {
            let (leaf, at) = placement(index);
            let row = rows
                .get(&(leaf as i64 + 1))
                .ok_or(MerkleError::Missing { index })?;
            row.get(at * 32..at * 32 + 32)
                .and_then(Hash::from_slice)
                .map(|h| (index, h))
                .ok_or(MerkleError::Malformed { index })
        })
        .collect()
}

/// `SELECT seq, hashes FROM audit_tree` for `n` seqs, as `$1 … $n`, which
/// both backends read.
pub(crate) fn select_sql(n: usize) -> String {
    let list: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!(
        "SELECT seq, hashes FROM audit_tree WHERE seq IN ({})",
        list.join(", ")
    )
}

/// The stored hashes [`root`] reads for a tree of `size` leaves.
pub fn root_indexes(size: u64) -> Vec<u64> {
    frontier(size)
}

/// The root of the tree of `size` leaves (the hash of the empty string for none).
pub fn root(size: u64, stored: &Stored) -> Result<Hash, MerkleError> {
    let reader = Reader::over(stored);
    tlog::tree_hash(size, &reader)
        .map(|h| Hash(h.0))
        .map_err(|e| reader.explain(e))
}

/// The stored hashes [`inclusion_proof`] reads.
pub fn inclusion_indexes(size: u64, leaf: u64) -> Result<Vec<u64>, MerkleError> {
    wanted(|r| tlog::prove_record(size, leaf, r).map(drop))
}

/// The audit path of leaf `leaf` (from 0) in the tree of `size` leaves,
/// bottom up, as RFC 6962 orders it.
pub fn inclusion_proof(size: u64, leaf: u64, stored: &Stored) -> Result<Vec<Hash>, MerkleError> {
    let reader = Reader::over(stored);
    tlog::prove_record(size, leaf, &reader)
        .map(hashes)
        .map_err(|e| reader.explain(e))
}

/// The stored hashes [`consistency_proof`] reads.
pub fn consistency_indexes(new_size: u64, old_size: u64) -> Result<Vec<u64>, MerkleError> {
    wanted(|r| tlog::prove_tree(new_size, old_size, r).map(drop))
}

/// The proof that the tree of `new_size` leaves extends the tree of
/// `old_size` (1 ≤ old ≤ new), as RFC 6962 orders it.
pub fn consistency_proof(
    new_size: u64,
    old_size: u64,
    stored: &Stored,
) -> Result<Vec<Hash>, MerkleError> {
    let reader = Reader::over(stored);
    tlog::prove_tree(new_size, old_size, &reader)
        .map(hashes)
        .map_err(|e| reader.explain(e))
}

/// Checks that `proof` shows a leaf with hash `leaf_hash` at `leaf` in the
/// tree of `size` leaves whose root is `root`.
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    leaf: u64,
    leaf_hash: Hash,
) -> Result<(), MerkleError> {
    tlog::check_record(
        &tlog_hashes(proof),
        size,
        tlog::Hash(root.0),
        leaf,
        tlog::Hash(leaf_hash.0),
    )
    .map_err(proof_error)
}

/// Checks that `proof` shows the tree of `new_size` leaves with root
/// `new_root` to extend the one of `old_size` with root `old_root`.
pub fn check_consistency(
    proof: &[Hash],
    new_size: u64,
    new_root: Hash,
    old_size: u64,
    old_root: Hash,
) -> Result<(), MerkleError> {
    tlog::check_tree(
        &tlog_hashes(proof),
        new_size,
        tlog::Hash(new_root.0),
        old_size,
        tlog::Hash(old_root.0),
    )
    .map_err(proof_error)
}

/// Leaf ranges `[start, end)` (from 0), sorted, disjoint and not touching:
/// the leaves a range proof covers.
pub type Runs = [(u64, u64)];

/// How a subtree of the tree relates to the leaves a range proof covers.
enum Cover {
    None,
    Whole,
    Part,
}

fn cover(runs: &Runs, lo: u64, hi: u64) -> Cover {
    // The first run that ends after `lo`.
    let i = runs.partition_point(|&(_, end)| end <= lo);
    match runs.get(i) {
        Some(&(start, end)) if start <= lo && end >= hi => Cover::Whole,
        Some(&(start, _)) if start < hi => Cover::Part,
        _ => Cover::None,
    }
}

/// Walks the RFC 6962 shape of `[lo, hi)`, calling `outside` for each
/// maximal subtree that holds none of `runs`' leaves and `inside` for each
/// that holds only theirs, left to right; a subtree holding both is split.
fn walk_cover<T>(
    runs: &Runs,
    lo: u64,
    hi: u64,
    outside: &mut impl FnMut(u64, u64) -> Result<T, MerkleError>,
    inside: &mut impl FnMut(u64, u64) -> Result<T, MerkleError>,
    join: &impl Fn(T, T) -> T,
) -> Result<T, MerkleError> {
    match cover(runs, lo, hi) {
        Cover::None => outside(lo, hi),
        Cover::Whole => inside(lo, hi),
        Cover::Part => {
            // hi - lo >= 2 here: a single leaf is either covered or not.
            let k = 1u64 << (63 - (hi - lo - 1).leading_zeros());
            let left = walk_cover(runs, lo, lo + k, outside, inside, join)?;
            let right = walk_cover(runs, lo + k, hi, outside, inside, join)?;
            Ok(join(left, right))
        }
    }
}

fn check_runs(size: u64, runs: &Runs) -> Result<(), MerkleError> {
    let ordered = runs.windows(2).all(|w| w[0].1 < w[1].0);
    let fits = runs.iter().all(|&(s, e)| s < e) && runs.last().is_none_or(|&(_, e)| e <= size);
    if runs.is_empty() || !ordered || !fits {
        return Err(MerkleError::BadRequest(format!(
            "leaf ranges {runs:?} are not sorted, apart and within a tree of {size}"
        )));
    }
    Ok(())
}

/// The stored hashes [`range_proof`] reads.
pub fn range_proof_indexes(size: u64, runs: &Runs) -> Result<Vec<u64>, MerkleError> {
    check_runs(size, runs)?;
    let mut need = Vec::new();
    walk_cover(
        runs,
        0,
        size,
        &mut |lo, hi| {
            need = tlog::sub_tree_index(lo, hi, std::mem::take(&mut need));
            Ok(())
        },
        &mut |_, _| Ok(()),
        &|(), ()| (),
    )?;
    Ok(need)
}

/// A proof that the leaves in `runs` are those of the tree of `size`
/// leaves: the hash of every maximal subtree holding none of them, left to
/// right. With those leaves' hashes, [`range_root`] gives the root. It is
/// O(log n) hashes per run, where a proof per leaf would be that per leaf.
pub fn range_proof(size: u64, runs: &Runs, stored: &Stored) -> Result<Vec<Hash>, MerkleError> {
    check_runs(size, runs)?;
    let mut proof = Vec::new();
    walk_cover(
        runs,
        0,
        size,
        &mut |lo, hi| {
            let indexes = tlog::sub_tree_index(lo, hi, Vec::new());
            let parts = indexes
                .iter()
                .map(|i| {
                    stored
                        .get(i)
                        .copied()
                        .ok_or(MerkleError::Missing { index: *i })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // The parts shrink left to right; RFC 6962 joins them from the right.
            let mut parts = parts.into_iter().rev();
            let last = parts
                .next()
                .ok_or(MerkleError::BadRequest("an empty subtree".into()))?;
            proof.push(parts.fold(last, |right, left| node(left, right)));
            Ok(())
        },
        &mut |_, _| Ok(()),
        &|(), ()| (),
    )?;
    Ok(proof)
}

/// The root of the tree of `size` leaves given the hashes of the leaves in
/// `runs` (in order) and their [`range_proof`]; an error if either has too
/// few or too many hashes.
pub fn range_root(
    size: u64,
    runs: &Runs,
    leaves: &[Hash],
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    check_runs(size, runs)?;
    let mut leaves = leaves.iter();
    let mut proof = proof.iter();
    let short = || MerkleError::InvalidProof;
    let root = walk_cover(
        runs,
        0,
        size,
        &mut |_, _| proof.next().copied().ok_or_else(short),
        &mut |lo, hi| subtree_of(hi - lo, &mut leaves).ok_or_else(short),
        &|l, r| node(l, r),
    )?;
    if leaves.next().is_some() || proof.next().is_some() {
        return Err(MerkleError::InvalidProof);
    }
    Ok(root)
}

/// The RFC 6962 hash of the next `n` leaves of `leaves`.
fn subtree_of<'a>(n: u64, leaves: &mut impl Iterator<Item = &'a Hash>) -> Option<Hash> {
    if n == 1 {
        return leaves.next().copied();
    }
    let k = 1u64 << (63 - (n - 1).leading_zeros());
    let left = subtree_of(k, leaves)?;
    let right = subtree_of(n - k, leaves)?;
    Some(node(left, right))
}

fn node(left: Hash, right: Hash) -> Hash {
    Hash(tlog::node_hash(tlog::Hash(left.0), tlog::Hash(right.0)).0)
}

fn proof_error(e: tlog::Error) -> MerkleError {
    match e {
        tlog::Error::InvalidInput(what) => MerkleError::BadRequest(what),
        _ => MerkleError::InvalidProof,
    }
}

fn hashes(proof: Vec<tlog::Hash>) -> Vec<Hash> {
    proof.into_iter().map(|h| Hash(h.0)).collect()
}

fn tlog_hashes(proof: &[Hash]) -> Vec<tlog::Hash> {
    proof.iter().map(|h| tlog::Hash(h.0)).collect()
}

/// The stored hash indexes `op` asks for, found by running it against a
/// reader that notes them and answers placeholders: which hashes an
/// operation reads depends only on sizes and positions, never on values.
fn wanted(op: impl FnOnce(&Recorder) -> Result<(), tlog::Error>) -> Result<Vec<u64>, MerkleError> {
    let recorder = Recorder::default();
    match op(&recorder) {
        Ok(()) | Err(tlog::Error::InvalidProof) => {}
        Err(tlog::Error::InvalidInput(what)) => return Err(MerkleError::BadRequest(what)),
        Err(e) => return Err(MerkleError::BadRequest(e.to_string())),
    }
    let mut indexes = recorder.asked.into_inner();
    indexes.sort_unstable();
    indexes.dedup();
    Ok(indexes)
}

#[derive(Default)]
struct Recorder {
    asked: std::cell::RefCell<Vec<u64>>,
}

impl tlog::HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        self.asked.borrow_mut().extend_from_slice(indexes);
        Ok(vec![tlog::Hash([0; 32]); indexes.len()])
    }
}

/// Fetched hashes as tlog reads them; remembers the first one missing.
struct Reader<'a> {
    stored: &'a Stored,
    missing: std::cell::Cell<Option<u64>>,
}

impl<'a> Reader<'a> {
    fn over(stored: &'a Stored) -> Self {
        Reader {
            stored,
            missing: std::cell::Cell::new(None),
        }
    }

    /// Our error for one of tlog's: a read of a hash we lack, or a bad request.
    fn explain(&self, e: tlog::Error) -> MerkleError {
        match e {
            tlog::Error::IndexesNotInTree => MerkleError::Missing {
                index: self.missing.get().unwrap_or_default(),
            },
            tlog::Error::InvalidInput(what) => MerkleError::BadRequest(what),
            other => MerkleError::BadRequest(other.to_string()),
        }
    }
}

impl tlog::HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|i| match self.stored.get(i) {
                Some(h) => Ok(tlog::Hash(h.0)),
                None => {
                    self.missing.set(Some(*i));
                    Err(tlog::Error::IndexesNotInTree)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct_merkle::mem_backed_tree::MemoryBackedTree;

    type Reference = MemoryBackedTree<sha2_011::Sha256, Vec<u8>>;

    fn leaf(i: u64) -> Vec<u8> {
        format!("event {i}").into_bytes()
    }

    /// Stored hashes of a tree of `n` leaves, appended `batch` at a time
    /// with only the frontier known to each append, as the writer does.
    fn build(leaves: &[Vec<u8>], batch: usize) -> Stored {
        let mut stored = Stored::new();
        for (b, chunk) in leaves.chunks(batch).enumerate() {
            let size = (b * batch) as u64;
            let edge: Stored = frontier(size)
                .into_iter()
                .map(|i| (i, stored[&i]))
                .collect();
            let hashes: Vec<Hash> = chunk.iter().map(|l| leaf_hash(l)).collect();
            stored.extend(append(size, &hashes, &edge).unwrap());
        }
        stored
    }

    fn concat(proof: &[Hash]) -> Vec<u8> {
        proof.iter().flat_map(|h| h.0).collect()
    }

    fn only(stored: &Stored, indexes: Vec<u64>) -> Stored {
        indexes.into_iter().map(|i| (i, stored[&i])).collect()
    }

    #[test]
    fn roots_and_proofs_match_an_independent_implementation_for_sizes_1_to_1000() {
        let leaves: Vec<Vec<u8>> = (0..1000).map(leaf).collect();
        let stored = build(&leaves, 7);
        let mut reference = Reference::new();
        let mut roots = vec![Hash([0; 32])];
        for n in 1..=1000u64 {
            reference.push(leaves[n as usize - 1].clone());
            // Each operation gets exactly the hashes it said it reads.
            let root = root(n, &only(&stored, root_indexes(n))).unwrap();
            assert_eq!(&root.0[..], &reference.root().as_bytes()[..], "root of {n}");
            roots.push(root);
            let positions: Vec<u64> = if n <= 64 {
                (0..n).collect()
            } else {
                vec![0, n / 3, n / 2, n - 2, n - 1]
            };
            for i in positions {
                let proof = inclusion_proof(n, i, &only(&stored, inclusion_indexes(n, i).unwrap()))
                    .unwrap();
                let theirs = reference.prove_inclusion(i as usize);
                assert_eq!(concat(&proof), theirs.as_bytes(), "inclusion of {i} in {n}");
                check_inclusion(&proof, n, root, i, leaf_hash(&leaves[i as usize])).unwrap();
            }
            for m in [1, n / 2, n - 1, n]
                .into_iter()
                .filter(|m| (1..=n).contains(m))
            {
                let proof =
                    consistency_proof(n, m, &only(&stored, consistency_indexes(n, m).unwrap()))
                        .unwrap();
                let theirs = reference.prove_consistency((n - m) as usize);
                assert_eq!(concat(&proof), theirs.as_bytes(), "consistency {m} → {n}");
                check_consistency(&proof, n, root, m, roots[m as usize]).unwrap();
            }
        }
    }

    /// Every set of leaf runs over trees of up to 40 leaves, as bit masks of
    /// a few shapes, proven from exactly the hashes asked for.
    #[test]
    fn range_proofs_give_the_root_for_any_runs_and_fail_when_altered() {
        let leaves: Vec<Vec<u8>> = (0..40).map(leaf).collect();
        let stored = build(&leaves, 3);
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        for n in 1..=40u64 {
            let want = root(n, &only(&stored, root_indexes(n))).unwrap();
            for pattern in [
                1u64,
                0b110,
                0b1_0110_1101,
                0x00f0_f0f0_f0f0,
                !0,
                0x8000_0001,
                0x0055_5555_5555,
            ] {
                let mask = pattern & ((1u64 << n) - 1).max(1);
                let mut runs: Vec<(u64, u64)> = Vec::new();
                for i in (0..n).filter(|i| mask >> i & 1 == 1) {
                    match runs.last_mut() {
                        Some(r) if r.1 == i => r.1 += 1,
                        _ => runs.push((i, i + 1)),
                    }
                }
                if runs.is_empty() {
                    continue;
                }
                let covered: Vec<Hash> = runs
                    .iter()
                    .flat_map(|&(a, b)| hashes[a as usize..b as usize].iter().copied())
                    .collect();
                let proof = range_proof(
                    n,
                    &runs,
                    &only(&stored, range_proof_indexes(n, &runs).unwrap()),
                )
                .unwrap();
                assert_eq!(
                    range_root(n, &runs, &covered, &proof).unwrap(),
                    want,
                    "{n} {runs:?}"
                );
                let mut altered = covered.clone();
                altered[0].0[0] ^= 1;
                assert_ne!(range_root(n, &runs, &altered, &proof).unwrap(), want);
                assert!(range_root(n, &runs, &covered[1..], &proof).is_err());
                if let Some(first) = proof.first() {
                    let mut altered = proof.clone();
                    altered[0] = Hash([first.0[0] ^ 1; 32]);
                    assert_ne!(range_root(n, &runs, &covered, &altered).ok(), Some(want));
                }
            }
        }
        assert!(range_proof_indexes(5, &[(2, 3), (1, 2)]).is_err());
        assert!(range_proof_indexes(5, &[(4, 6)]).is_err());
        assert!(range_proof_indexes(5, &[]).is_err());
    }

    #[test]
    fn batches_of_any_size_store_the_same_tree() {
        let leaves: Vec<Vec<u8>> = (0..300).map(leaf).collect();
        let one_by_one = build(&leaves, 1);
        for batch in [2, 3, 64, 255, 256, 300] {
            assert_eq!(build(&leaves, batch), one_by_one, "batches of {batch}");
        }
        // About two stored hashes per leaf.
        assert_eq!(one_by_one.len() as u64, tlog::stored_hash_count(300));
    }

    #[test]
    fn rfc_6962_test_vectors() {
        // The Certificate Transparency test leaves and the roots of their prefixes.
        let leaves: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves: Vec<Vec<u8>> = leaves.iter().map(|l| l.to_vec()).collect();
        let stored = build(&leaves, 3);
        for (n, expected) in roots.iter().enumerate() {
            let root = root(n as u64 + 1, &stored).unwrap();
            assert_eq!(root.to_string(), *expected, "root of {}", n + 1);
        }
        assert_eq!(
            root(0, &Stored::new()).unwrap().to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "the empty tree"
        );
    }

    #[test]
    fn a_wrong_proof_or_root_is_refused() {
        let leaves: Vec<Vec<u8>> = (0..20).map(leaf).collect();
        let stored = build(&leaves, 5);
        let root20 = root(20, &stored).unwrap();
        let mut proof = inclusion_proof(20, 7, &stored).unwrap();
        let leaf7 = leaf_hash(&leaves[7]);
        assert_eq!(
            check_inclusion(&proof, 20, root20, 7, leaf_hash(b"another")),
            Err(MerkleError::InvalidProof)
        );
        assert_eq!(
            check_inclusion(&proof, 20, root20, 8, leaf7),
            Err(MerkleError::InvalidProof)
        );
        proof[1].0[0] ^= 1;
        assert_eq!(
            check_inclusion(&proof, 20, root20, 7, leaf7),
            Err(MerkleError::InvalidProof)
        );
        let root10 = root(10, &stored).unwrap();
        let consistency = consistency_proof(20, 10, &stored).unwrap();
        check_consistency(&consistency, 20, root20, 10, root10).unwrap();
        assert_eq!(
            check_consistency(&consistency, 20, root20, 10, root(9, &stored).unwrap()),
            Err(MerkleError::InvalidProof)
        );
    }

    #[test]
    fn each_leafs_row_holds_what_its_append_stored() {
        let leaves: Vec<Vec<u8>> = (0..300).map(leaf).collect();
        let stored = build(&leaves, 300);
        let mut nodes: Vec<(u64, Hash)> = stored.iter().map(|(i, h)| (*i, *h)).collect();
        nodes.sort_unstable_by_key(|(i, _)| *i);
        let rows = leaf_rows(0, &nodes);
        assert_eq!(rows.len(), 300);
        let indexes: Vec<u64> = (0..tlog::stored_hash_count(300)).collect();
        assert_eq!(from_rows(&indexes, rows.clone()).unwrap(), stored);
        // Appended in two steps, the rows are the same.
        let (first, second): (Vec<_>, Vec<_>) = nodes
            .iter()
            .partition(|(i, _)| *i < tlog::stored_hash_count(100));
        let mut split = leaf_rows(0, &first);
        split.extend(leaf_rows(100, &second));
        assert_eq!(split, rows);
        // A row cut short is named.
        let mut short = rows;
        short[7].1.truncate(16);
        let at = tlog::stored_hash_index(0, 7);
        assert_eq!(
            from_rows(&[at], short),
            Err(MerkleError::Malformed { index: at })
        );
    }

    #[test]
    fn a_missing_stored_hash_is_named_and_bad_positions_refused() {
        let leaves: Vec<Vec<u8>> = (0..8).map(leaf).collect();
        let mut stored = build(&leaves, 8);
        let wanted = root_indexes(5);
        stored.remove(&wanted[0]);
        assert_eq!(
            root(5, &stored),
            Err(MerkleError::Missing { index: wanted[0] })
        );
        assert!(matches!(
            inclusion_indexes(5, 5),
            Err(MerkleError::BadRequest(_))
        ));
        assert!(matches!(
            consistency_indexes(5, 6),
            Err(MerkleError::BadRequest(_))
        ));
    }
}
