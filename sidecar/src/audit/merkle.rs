//! RFC 9162 §2.1 (RFC 6962 §2.1) Merkle tree hashing: leaves, roots,
//! inclusion and consistency proofs. The verifiers take only a tree size,
//! root, proof and leaf hash, so a copy of this module is all an offline
//! verifier needs. Everything here is linear in the number of leaves.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(entry)
        .finalize()
        .into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The root of `leaves` (MTH in the RFC).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::default();
    for leaf in leaves {
        frontier.push(*leaf);
    }
    frontier.root()
}

/// The roots of the perfect subtrees a tree of `size` leaves splits into,
/// largest (leftmost) first: enough to append leaves and to compute the
/// root without the leaves themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// A frontier read back from storage; `None` if `hashes` cannot be the
    /// frontier of a tree of `size` leaves (one hash per set bit of `size`).
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Frontier> {
        (hashes.len() == size.count_ones() as usize).then_some(Frontier { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    pub fn push(&mut self, leaf: Hash) {
        // Each trailing one bit of the old size is a perfect subtree of the
        // new leaf's size that the new leaf completes.
        let mut hash = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            let Some(left) = self.hashes.pop() else { break };
            hash = node_hash(&left, &hash);
            n >>= 1;
        }
        self.hashes.push(hash);
        self.size += 1;
    }

    /// The tree's root: the subtree roots folded from the right, which is
    /// the RFC's split at the largest power of two below the size.
    pub fn root(&self) -> Hash {
        let mut rest = self.hashes.iter().rev();
        match rest.next() {
            None => empty_root(),
            Some(last) => rest.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The inclusion proof (PATH) of leaf `index` in the tree of `leaves`,
/// leaf side first; `None` if `index` is outside the tree.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Option<Vec<Hash>> {
    let index = usize::try_from(index).ok()?;
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    path(index, leaves, &mut proof);
    Some(proof)
}

fn path(m: usize, leaves: &[Hash], proof: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let (left, right) = leaves.split_at(split(leaves.len()));
    if m < left.len() {
        path(m, left, proof);
        proof.push(root(right));
    } else {
        path(m - left.len(), right, proof);
        proof.push(root(left));
    }
}

/// The consistency proof (PROOF) between the tree of the first `old_size`
/// of `leaves` and the tree of all of them; `None` if `old_size` exceeds
/// the tree. Empty when the old tree is empty or the whole tree.
pub fn consistency_proof(old_size: u64, leaves: &[Hash]) -> Option<Vec<Hash>> {
    let m = usize::try_from(old_size).ok()?;
    if m > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut proof);
    }
    Some(proof)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            proof.push(root(leaves));
        }
        return;
    }
    let (left, right) = leaves.split_at(split(n));
    if m <= left.len() {
        subproof(m, left, whole, proof);
        proof.push(root(right));
    } else {
        subproof(m - left.len(), right, false, proof);
        proof.push(root(left));
    }
}

/// Right-shifts `fn_` and `sn` together until `fn_`'s low bit is set or it is 0.
fn shift_to_set_bit(fn_: &mut u64, sn: &mut u64) {
    while *fn_ & 1 == 0 && *fn_ != 0 {
        *fn_ >>= 1;
        *sn >>= 1;
    }
}

/// Whether `proof` shows leaf `leaf` at `index` in the tree of `size` with
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            shift_to_set_bit(&mut fn_, &mut sn);
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Whether `proof` shows the tree of `old_size` with `old_root` to be the
/// first `old_size` leaves of the tree of `new_size` with `new_root` (RFC
/// 9162 §2.1.4.2, which covers 0 < old < new; equal sizes need equal roots
/// and an empty proof, and the empty tree precedes every tree).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == empty_root();
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    if proof.is_empty() {
        return false;
    }
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            shift_to_set_bit(&mut fn_, &mut sn);
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *old_root && sr == *new_root && sn == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn h(hex: &str) -> Hash {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    /// The RFC 6962 test tree the certificate-transparency implementations
    /// share (leaf inputs, then the root of each prefix).
    const LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn vector_leaves() -> Vec<Hash> {
        LEAVES.iter().map(|l| leaf_hash(l)).collect()
    }

    #[test]
    fn roots_match_the_rfc_6962_vectors() {
        let leaves = vector_leaves();
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(root(&leaves[..n]), h(want), "size {n}");
        }
        assert_eq!(empty_root(), h(ROOTS[0]));
    }

    #[test]
    fn inclusion_proofs_match_the_vectors() {
        let leaves = vector_leaves();
        let cases: [(u64, usize, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            let proof = inclusion_proof(index, &leaves[..size]).unwrap();
            assert_eq!(proof, want, "leaf {index} of {size}");
            let (leaf, root) = (&leaves[index as usize], &h(ROOTS[size]));
            assert!(verify_inclusion(index, size as u64, leaf, &proof, root));
        }
    }

    #[test]
    fn consistency_proofs_match_the_vectors() {
        let leaves = vector_leaves();
        let cases: [(u64, usize, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, size, want) in cases {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            let proof = consistency_proof(old, &leaves[..size]).unwrap();
            assert_eq!(proof, want, "{old} to {size}");
            let (r1, r2) = (h(ROOTS[old as usize]), h(ROOTS[size]));
            assert!(verify_consistency(old, size as u64, &r1, &r2, &proof));
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    /// Proofs that must not verify: wrong leaf, sizes, roots, and every
    /// single-bit, dropped, added or swapped element.
    fn mutations(proof: &[Hash]) -> Vec<Vec<Hash>> {
        let mut out = Vec::new();
        for i in 0..proof.len() {
            let mut p = proof.to_vec();
            p[i][0] ^= 8;
            out.push(p);
            let mut p = proof.to_vec();
            p.remove(i);
            out.push(p);
        }
        let mut p = proof.to_vec();
        p.push(empty_root());
        out.push(p);
        let mut p = proof.to_vec();
        p.insert(0, empty_root());
        out.push(p);
        if proof.len() > 1 {
            let mut p = proof.to_vec();
            p.swap(0, 1);
            if p != proof {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn every_inclusion_proof_up_to_64_verifies_and_no_mutation_does() {
        let all = leaves(64);
        for n in 1..=all.len() {
            let tree = &all[..n];
            let r = root(tree);
            let size = n as u64;
            for i in 0..size {
                let leaf = &tree[i as usize];
                let proof = inclusion_proof(i, tree).unwrap();
                assert!(verify_inclusion(i, size, leaf, &proof, &r), "{i} of {n}");
                for bad in mutations(&proof) {
                    assert!(!verify_inclusion(i, size, leaf, &bad, &r), "{i} of {n}");
                }
                let other = leaf_hash(b"other");
                assert!(!verify_inclusion(i, size, &other, &proof, &r));
                assert!(!verify_inclusion(i, size, leaf, &proof, &empty_root()));
                assert!(!verify_inclusion(i ^ 1, size, leaf, &proof, &r));
                assert!(!verify_inclusion(i, size * 2, leaf, &proof, &r));
            }
            assert!(inclusion_proof(size, tree).is_none());
            assert!(!verify_inclusion(size, size, &all[0], &[], &r));
        }
    }

    #[test]
    fn every_consistency_proof_up_to_64_verifies_and_no_mutation_does() {
        let all = leaves(64);
        let roots: Vec<Hash> = (0..=all.len()).map(|n| root(&all[..n])).collect();
        for n in 1..=all.len() {
            let tree = &all[..n];
            for m in 0..=n {
                let proof = consistency_proof(m as u64, tree).unwrap();
                let (m64, n64) = (m as u64, n as u64);
                assert!(
                    verify_consistency(m64, n64, &roots[m], &roots[n], &proof),
                    "{m} to {n}"
                );
                if m == 0 || m == n {
                    assert!(proof.is_empty());
                    continue;
                }
                for bad in mutations(&proof) {
                    assert!(!verify_consistency(m64, n64, &roots[m], &roots[n], &bad));
                }
                assert!(!verify_consistency(m64, n64, &roots[m], &roots[m], &proof));
                assert!(!verify_consistency(m64, n64, &roots[n], &roots[n], &proof));
                assert!(!verify_consistency(m64, n64, &roots[n], &roots[m], &proof));
                assert!(!verify_consistency(m64, n64, &roots[m], &roots[n], &[]));
                assert!(!verify_consistency(n64, m64, &roots[n], &roots[m], &proof));
                assert!(!verify_consistency(
                    m64 + 1,
                    n64,
                    &roots[m],
                    &roots[n],
                    &proof
                ));
                assert!(!verify_consistency(
                    m64 - 1,
                    n64,
                    &roots[m],
                    &roots[n],
                    &proof
                ));
                assert!(!verify_consistency(
                    m64,
                    n64 * 2,
                    &roots[m],
                    &roots[n],
                    &proof
                ));
                assert!(!verify_consistency(
                    m64 ^ 2,
                    n64,
                    &roots[m],
                    &roots[n],
                    &proof
                ));
            }
        }
    }

    #[test]
    fn equal_and_empty_trees() {
        let r = root(&leaves(3));
        assert!(verify_consistency(3, 3, &r, &r, &[]));
        assert!(!verify_consistency(3, 3, &r, &empty_root(), &[]));
        assert!(!verify_consistency(3, 3, &r, &r, &[r]));
        assert!(verify_consistency(0, 3, &empty_root(), &r, &[]));
        assert!(!verify_consistency(0, 3, &r, &r, &[]));
        assert!(!verify_consistency(4, 3, &r, &r, &[r]));
        assert!(consistency_proof(4, &leaves(3)).is_none());
    }

    #[test]
    fn a_frontier_grows_like_the_tree_and_survives_storage() {
        let all = leaves(100);
        let mut f = Frontier::default();
        for (i, leaf) in all.iter().enumerate() {
            assert_eq!(f.root(), root(&all[..i]));
            f.push(*leaf);
            let back = Frontier::from_parts(f.size(), f.hashes().to_vec()).unwrap();
            assert_eq!(back, f);
        }
        assert_eq!(f.size(), 100);
        assert!(Frontier::from_parts(100, vec![]).is_none());
    }

    #[test]
    fn a_hundred_thousand_leaves_hash_quickly() {
        let all = leaves(100_000);
        let started = std::time::Instant::now();
        let r = root(&all);
        let proof = inclusion_proof(77_777, &all).unwrap();
        assert!(verify_inclusion(77_777, 100_000, &all[77_777], &proof, &r));
        let proof = consistency_proof(65_537, &all).unwrap();
        let old = root(&all[..65_537]);
        assert!(verify_consistency(65_537, 100_000, &old, &r, &proof));
        // Debug builds hash about a million nodes a second; the bound is loose.
        assert!(started.elapsed().as_secs() < 20);
    }
}
