use super::{FusedKerSpec, FusedSpec, MatMatMulKer, OutputStoreKer};
#[cfg(target_arch = "x86_64")]
use super::OutputStore;
use crate::{BinOp, LADatum};
use downcast_rs::{Downcast, impl_downcast};
use std::cell::RefCell;
use std::fmt::Debug;
use std::sync::atomic::AtomicUsize;
use tract_data::internal::num_integer::Integer;
use tract_data::internal::*;

static GENERATION: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static TLS: RefCell<TLSScratch> = Default::default();
}

#[derive(Default, Debug)]
pub(crate) struct TLSScratch {
    generation: usize,
    blob: Blob,
    ker_specs_16: Vec<FusedKerSpec<f16>>,
    ker_specs_32: Vec<FusedKerSpec<f32>>,
    ker_specs_64: Vec<FusedKerSpec<f64>>,
}

impl TLSScratch {
    #[allow(unknown_lints, clippy::missing_transmute_annotations)]
    fn ker_specs<TI: LADatum>(&mut self) -> &mut Vec<FusedKerSpec<TI>> {
        unsafe {
            if TI::datum_type() == f32::datum_type() || TI::datum_type() == i32::datum_type() {
                std::mem::transmute(&mut self.ker_specs_32)
            } else if TI::datum_type() == f16::datum_type() {
                std::mem::transmute(&mut self.ker_specs_16)
            } else if TI::datum_type() == f64::datum_type() {
                std::mem::transmute(&mut self.ker_specs_64)
            } else {
                todo!();
            }
        }
    }

    fn sync<TI: LADatum>(&mut self, scratch: &ScratchSpaceImpl<TI>) {
        if self.generation == scratch.generation {
            return;
        }
        let ker_specs = self.ker_specs::<TI>();
        ker_specs.clear();
        ker_specs.extend_from_slice(&scratch.ker_specs);

        unsafe {
            self.blob.ensure_size_and_align(scratch.blob_size, scratch.blob_align);

            for LocDependent { loc, ker_spec, .. } in &scratch.loc_dependent {
                #[allow(clippy::single_match)]
                if matches!(scratch.ker_specs[*ker_spec], FusedKerSpec::AddMatMul { .. }) {
                    let scratch = &mut *(self.blob.as_ptr().add(*loc) as *mut AddMatMulTemp);
                    scratch.panel_a_id = usize::MAX;
                    scratch.panel_b_id = usize::MAX;
                };
            }
        }
        self.generation = scratch.generation;
    }
}

pub trait ScratchSpace: Downcast + Send {}
impl_downcast!(ScratchSpace);

#[derive(Debug, Default)]
pub struct ScratchSpaceImpl<TI: LADatum> {
    generation: usize,
    blob_size: usize,
    blob_align: usize,
    ker_specs: Vec<FusedKerSpec<TI>>,
    loc_dependent: TVec<LocDependent>,
    valid_down_tiles: usize,
    remnant_down: usize,
    valid_right_tiles: usize,
    remnant_right: usize,
}

#[derive(Debug, new)]
struct LocDependent {
    spec: usize,
    ker_spec: usize,
    // offset for the location dependent structure
    loc: usize,
    // offset of its associated dynamic-size buffers
    buffer_a: Option<usize>,
    buffer_b: Option<usize>,
}

impl<TI: LADatum> ScratchSpace for ScratchSpaceImpl<TI> {}
unsafe impl<TI: LADatum> Send for ScratchSpaceImpl<TI> {}

/// The bytes of an A panel a tile takes at a time in [`ScratchSpaceImpl::run_k_blocked`]:
/// 64 KB, 256 steps of k of a 64-row f32 panel and 512 of a 32-row one. In a C copy of the
/// 64x6 loop on a 1536 × 6144 × 97 product, blocks of 128 and 256 steps ran at 127–132
/// GFLOP/s, the whole k at 105–108. On the 32x3 tile (AVX2, Zen 1, the same product) blocks
/// of 512 steps ran it in 47–50 ms, blocks of 256 in 54–57, the whole k in 65–67.
#[cfg(target_arch = "x86_64")]
const K_BLOCK_BYTES: usize = 64 * 1024;

/// The longest A panel, in bytes, that a kernel prefetching the next one
/// (`MatMatMulKer::prefetches_next_a`) fetches beside the one it multiplies: a quarter of
/// L2, 0 where L2 is unknown. Longer panels are the ones [`ScratchSpaceImpl::k_blocks`]
/// takes a block of k at a time instead, so the two must read the same budget.
#[cfg(target_arch = "x86_64")]
fn next_a_budget() -> usize {
    crate::cache::cache_info().l2 / 4
}

/// What a kernel that prefetches the next A panel (`MatMatMulKer::prefetches_next_a`)
/// finds above the six low bits of `AddMatMul`'s packing word: the part of that panel for
/// the tile in column `right`. Each tile asks for `k * 16` bytes (a line every four steps
/// of k), so the tiles of one row, left to right, bring the next panel in one part each;
/// past its end, or with no next panel, it is 0 and the kernel asks for nothing.
#[cfg(any(test, target_arch = "x86_64"))]
fn next_a_part(next: *const u8, len: usize, k: usize, right: usize) -> usize {
    let from = right.saturating_mul(k).saturating_mul(16);
    if next.is_null() || from >= len { 0 } else { (next as usize + from) & !63 }
}

/// Whether the bytes two stores may reach lie apart: each from its first item over as many
/// items as its tensor holds, which covers any view into that tensor. A negative stride
/// puts items before the first, so it is taken as overlapping.
#[cfg(target_arch = "x86_64")]
fn apart(a: &OutputStore, b: &OutputStore) -> bool {
    let forward = |s: &OutputStore| {
        s.row_byte_stride >= 0
            && s.col_byte_stride >= 0
            && s.panel_row_byte_stride >= 0
            && s.panel_col_byte_stride >= 0
    };
    let span = |s: &OutputStore| {
        let start = s.ptr as usize;
        (start, start.saturating_add(s.item_size.saturating_mul(s.item_count)))
    };
    let ((a0, a1), (b0, b1)) = (span(a), span(b));
    forward(a) && forward(b) && (a1 <= b0 || b1 <= a0)
}

#[derive(Debug)]
struct AddMatMulTemp {
    ptr_a: *const u8,
    panel_a_id: usize,
    /// The next A panel and its length, for a kernel that prefetches it (null if none).
    #[cfg(target_arch = "x86_64")]
    next_a: *const u8,
    #[cfg(target_arch = "x86_64")]
    next_a_len: usize,
    ptr_b: *const u8,
    panel_b_id: usize,
}

/// True when this border tile can store its live rows straight into C.
///
/// Only `sme_mmm_f32_32x32` understands the packing hint, and only for a
/// full N panel whose columns are contiguous. The tile must also contain a
/// matmul: the hint travels in that op, and without it the kernel stores
/// all 32 rows. A count of 16 or less also skips the bottom-tile FMOPAs;
/// 17..31 only shortens the store.
fn partial_m_direct<TI: LADatum>(
    ker: &impl MatMatMulKer<Acc = TI>,
    specs: &[FusedSpec],
    m_remnant: usize,
    n_remnant: usize,
) -> bool {
    if ker.name() != "sme_mmm_f32_32x32" {
        return false;
    }
    if m_remnant == 0
        || m_remnant >= ker.mr()
        || n_remnant != ker.nr()
        || !ker.stores_row_major_tile()
    {
        return false;
    }
    let mut saw_store = false;
    let mut saw_matmul = false;
    for spec in specs {
        match spec {
            FusedSpec::Store(store) => {
                saw_store = true;
                if store.col_byte_stride != store.item_size as isize || store.item_size != 4 {
                    return false;
                }
            }
            FusedSpec::AddMatMul { .. } => saw_matmul = true,
            _ => {}
        }
    }
    saw_store && saw_matmul
}

impl<TI: LADatum> ScratchSpaceImpl<TI> {
    pub unsafe fn prepare(
        &mut self,
        ker: &impl MatMatMulKer<Acc = TI>,
        m: usize,
        n: usize,
        specs: &[FusedSpec],
    ) -> TractResult<()> {
        use FusedKerSpec as FKS;
        use FusedSpec as FS;
        self.ker_specs.clear();
        self.loc_dependent.clear();
        self.ker_specs.reserve(specs.len() + 2);
        self.ker_specs.push(FusedKerSpec::Clear);
        self.valid_down_tiles = m / ker.mr();
        self.remnant_down = m % ker.mr();
        self.valid_right_tiles = n / ker.nr();
        self.remnant_right = n % ker.nr();
        let mut offset = 0;
        let mut align = std::mem::size_of::<*const ()>();
        fn ld(spec: usize, uspec: usize, loc: usize) -> LocDependent {
            LocDependent { spec, ker_spec: uspec, loc, buffer_a: None, buffer_b: None }
        }
        for (ix, spec) in specs.iter().enumerate() {
            offset = offset.next_multiple_of(&align);
            let ker_spec = match spec {
                FS::BinScalar(t, op) => match op {
                    BinOp::Min => FKS::ScalarMin(*t.try_as_plain_ram()?.to_scalar()?),
                    BinOp::Max => FKS::ScalarMax(*t.try_as_plain_ram()?.to_scalar()?),
                    BinOp::Mul => FKS::ScalarMul(*t.try_as_plain_ram()?.to_scalar()?),
                    BinOp::Add => FKS::ScalarAdd(*t.try_as_plain_ram()?.to_scalar()?),
                    BinOp::Sub => FKS::ScalarSub(*t.try_as_plain_ram()?.to_scalar()?),
                    BinOp::SubF => FKS::ScalarSubF(*t.try_as_plain_ram()?.to_scalar()?),
                },
                FS::ShiftLeft(s) => FKS::ShiftLeft(*s),
                FS::RoundingShiftRight(s, rp) => FKS::RoundingShiftRight(*s, *rp),
                FS::QScale(s, rp, m) => FKS::QScale(*s, *rp, *m),
                FS::BinPerRow(_, _) => {
                    self.loc_dependent.push(ld(ix, self.ker_specs.len(), offset));
                    offset += TI::datum_type().size_of() * ker.mr();
                    FusedKerSpec::Done
                }
                FS::BinPerCol(_, _) => {
                    self.loc_dependent.push(ld(ix, self.ker_specs.len(), offset));
                    offset += TI::datum_type().size_of() * ker.nr();
                    FusedKerSpec::Done
                }
                FS::AddRowColProducts(_, _) => {
                    self.loc_dependent.push(ld(ix, self.ker_specs.len(), offset));
                    offset += TI::datum_type().size_of() * (ker.mr() + ker.nr());
                    FusedKerSpec::Done
                }
                FS::AddUnicast(_) => {
                    self.loc_dependent.push(ld(ix, self.ker_specs.len(), offset));
                    offset += TI::datum_type().size_of() * ker.mr() * ker.nr();
                    FusedKerSpec::Done
                }
                FS::Store(store) => {
                    // Only worth a row-major tile when the destination is itself
                    // n-contiguous: set_from_tile then copies without transposing
                    // and the kernel's aligned bulk-store path applies.
                    let row_major = ker.stores_row_major_tile()
                        && store.col_byte_stride == store.item_size as isize;
                    let tile_bytes = if row_major {
                        // 128-align the row-major store tile, with rows padded to
                        // 128 bytes, so the kernel can hit its aligned bulk-store
                        // path (e.g. Apple AMX stz-direct).
                        align = align.lcm(&128);
                        offset = Integer::next_multiple_of(&offset, &128);
                        Integer::next_multiple_of(&(store.item_size * ker.nr()), &128) * ker.mr()
                    } else {
                        store.item_size * ker.mr() * ker.nr()
                    };
                    self.loc_dependent.push(ld(ix, self.ker_specs.len(), offset));
                    offset += tile_bytes;
                    FusedKerSpec::Done
                }
                FS::LeakyRelu(t) => FKS::LeakyRelu(*t.try_as_plain_ram()?.to_scalar()?),
                FS::AddMatMul { a, b, packing } => {
                    let mut ld = ld(ix, self.ker_specs.len(), offset);
                    offset += std::mem::size_of::<AddMatMulTemp>();
                    if let Some(tmp) = a.scratch_panel_buffer_layout() {
                        align = tmp.align().lcm(&align);
                        offset = Integer::next_multiple_of(&offset, &tmp.align());
                        ld.buffer_a = Some(offset);
                        offset += tmp.size();
                    }
                    if let Some(tmp) = b.scratch_panel_buffer_layout() {
                        align = tmp.align().lcm(&align);
                        offset = Integer::next_multiple_of(&offset, &tmp.align());
                        ld.buffer_b = Some(offset);
                        offset += tmp.size();
                    }
                    self.loc_dependent.push(ld);
                    FusedKerSpec::AddMatMul {
                        k: 0,
                        pa: std::ptr::null(),
                        pb: std::ptr::null(),
                        packing: *packing,
                    }
                }
            };
            self.ker_specs.push(ker_spec);
        }
        self.ker_specs.push(FKS::Done);
        self.blob_size = offset;
        self.blob_align = align;

        self.generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    pub unsafe fn run(
        &self,
        ker: &impl MatMatMulKer<Acc = TI>,
        specs: &[FusedSpec],
        down: usize,
        right: usize,
    ) -> TractResult<()> {
        // Per-tile entry: enter the TLS scope (does sync once) then run a single
        // tile. Single-threaded callers should prefer `run_in_tls_scope`+
        // `run_one_tile` to amortise the TLS borrow + sync over many tiles.
        unsafe {
            self.run_in_tls_scope(|this, tls| this.run_one_tile(ker, specs, tls, down, right))
        }
    }

    /// Borrow the per-thread scratch blob for a single MMM call and `sync` it
    /// once. The closure is invoked once with a mutable reference to the TLS
    /// scratch and to `self`. Used by single-threaded matmul drivers to avoid
    /// re-entering TLS / re-running `sync` per tile.
    pub(crate) unsafe fn run_in_tls_scope<F, R>(&self, f: F) -> R
    where
        F: FnOnce(&Self, &mut TLSScratch) -> R,
    {
        TLS.with_borrow_mut(|tls| {
            tls.sync(self);
            f(self, tls)
        })
    }

    /// Run a single tile against an already-borrowed TLS scratch. Caller is
    /// responsible for entering `run_in_tls_scope` first (so `sync` has run).
    #[inline(always)]
    pub(crate) unsafe fn run_one_tile(
        &self,
        ker: &impl MatMatMulKer<Acc = TI>,
        specs: &[FusedSpec],
        tls: &mut TLSScratch,
        down: usize,
        right: usize,
    ) -> TractResult<()> {
        unsafe {
            if down < self.valid_down_tiles && right < self.valid_right_tiles {
                self.for_valid_tile(ker, specs, tls, down, right)?;
                let err = ker.kernel(tls.ker_specs());
                ensure!(err == 0, "Kernel {} returned error {err}", ker.name());
            } else {
                let remnant_down =
                    if down < self.valid_down_tiles { ker.mr() } else { self.remnant_down };
                let remnant_right =
                    if right < self.valid_right_tiles { ker.nr() } else { self.remnant_right };
                let direct = self.for_border_tile(
                    ker,
                    specs,
                    tls,
                    down,
                    right,
                    remnant_down,
                    remnant_right,
                )?;
                let err = ker.kernel(tls.ker_specs());
                ensure!(err == 0, "Kernel {} returned error {err}", ker.name());
                if !direct {
                    self.postprocess_tile(specs, tls, down, right, remnant_down, remnant_right)?;
                }
            }
            Ok(())
        }
    }

    #[inline(always)]
    unsafe fn for_valid_tile(
        &self,
        ker: &impl MatMatMulKer<Acc = TI>,
        specs: &[FusedSpec],
        tls: &mut TLSScratch,
        down: usize,
        right: usize,
    ) -> TractResult<()> {
        unsafe {
            use FusedKerSpec as FKS;
            use FusedSpec as FS;
            let ScratchSpaceImpl { ker_specs, loc_dependent, .. } = self;
            debug_assert!(specs.len() + 2 == ker_specs.len());
            for LocDependent { spec, ker_spec, loc, buffer_a, buffer_b } in loc_dependent {
                let spec = specs.get_unchecked(*spec);
                let it = match spec {
                    FS::BinPerRow(v, op) => {
                        let v = v.as_ptr_unchecked::<TI>().add(down * ker.mr());
                        match op {
                            BinOp::Min => FKS::PerRowMin(v),
                            BinOp::Max => FKS::PerRowMax(v),
                            BinOp::Add => FKS::PerRowAdd(v),
                            BinOp::Mul => FKS::PerRowMul(v),
                            BinOp::Sub => FKS::PerRowSub(v),
                            BinOp::SubF => FKS::PerRowSubF(v),
                        }
                    }
                    FS::BinPerCol(v, op) => {
                        let v = v.as_ptr_unchecked::<TI>().add(right * ker.nr());
                        match op {
                            BinOp::Min => FKS::PerColMin(v),
                            BinOp::Max => FKS::PerColMax(v),
                            BinOp::Add => FKS::PerColAdd(v),
                            BinOp::Mul => FKS::PerColMul(v),
                            BinOp::Sub => FKS::PerColSub(v),
                            BinOp::SubF => FKS::PerColSubF(v),
                        }
                    }
                    FS::AddRowColProducts(rows, cols) => {
                        let row_ptr = rows.as_ptr_unchecked::<TI>().add(down * ker.mr());
                        let col_ptr = cols.as_ptr_unchecked::<TI>().add(right * ker.nr());
                        FKS::AddRowColProducts(row_ptr, col_ptr)
                    }
                    FS::AddUnicast(store) => FKS::AddUnicast(store.tile_c(down, right)),
                    FS::Store(c_store) => FKS::Store(c_store.tile_c(down, right)),
                    FS::AddMatMul { a, b, packing } => {
                        let scratch = (tls.blob.as_mut_ptr().add(*loc) as *mut AddMatMulTemp)
                            .as_mut()
                            .unwrap();
                        if scratch.panel_a_id != down {
                            scratch.ptr_a = a.panel_bytes(
                                down,
                                buffer_a.map(|o| tls.blob.as_mut_ptr().add(o)),
                            )?;
                            scratch.panel_a_id = down;
                            // only x86-64 kernels prefetch it (and the boards' binaries
                            // stay without the code)
                            #[cfg(target_arch = "x86_64")]
                            {
                                (scratch.next_a, scratch.next_a_len) =
                                    if ker.prefetches_next_a() && buffer_a.is_none() {
                                        self.next_a_panel(&**a, down, scratch.ptr_a)?
                                    } else {
                                        (std::ptr::null(), 0)
                                    };
                            }
                        }
                        if scratch.panel_b_id != right {
                            scratch.ptr_b = b.panel_bytes(
                                right,
                                buffer_b.map(|o| tls.blob.as_mut_ptr().add(o)),
                            )?;
                            scratch.panel_b_id = right;
                        }
                        let k = b.k();
                        #[cfg(target_arch = "x86_64")]
                        let packing =
                            *packing | next_a_part(scratch.next_a, scratch.next_a_len, k, right);
                        #[cfg(not(target_arch = "x86_64"))]
                        let packing = *packing;
                        FKS::AddMatMul { k, pa: scratch.ptr_a, pb: scratch.ptr_b, packing }
                    }
                    _ => std::hint::unreachable_unchecked(),
                };
                *tls.ker_specs().get_unchecked_mut(*ker_spec) = it;
            }
            Ok(())
        }
    }

    /// Whether [`Self::run_k_blocked`] takes this product, a block of k at a time. A long
    /// k: panels too long for a kernel that prefetches its next A panel to fetch it (more
    /// than a quarter of L2), or, for a kernel that does not, more than half of L2, where
    /// a panel re-read for each column of tiles no longer stays in L2 beside what else the
    /// walk reads (on the 32x3 tile with a 512 KB L2: the 1 B MLP's k 6144, not its 1536);
    /// f32 data packed ahead in the kernel's own layout; the product first, the store
    /// last, and between them only operations that read nothing of C (per row, per column,
    /// scalar, leaky ReLU, or a tensor added that lies apart from C), which the last block
    /// applies.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn k_blocks(&self, ker: &impl MatMatMulKer<Acc = TI>, specs: &[FusedSpec]) -> bool {
        use crate::pack::PackedFormat;
        let [FusedSpec::AddMatMul { a, b, .. }, middle @ .., FusedSpec::Store(c)] = specs else {
            return false;
        };
        let budget = next_a_budget();
        let f32_packed = |v: &dyn super::MMMInputValue, r: usize| {
            v.scratch_panel_buffer_layout().is_none()
                && v.format()
                    .downcast_ref::<PackedFormat>()
                    .is_some_and(|f| f.dt == f32::datum_type() && f.r == r)
        };
        let limit = if ker.prefetches_next_a() { budget } else { 2 * budget };
        TI::datum_type() == f32::datum_type()
            && c.item_size == 4
            && budget > 0
            && b.k() * ker.mr() * 4 > limit
            && middle.len() <= 3
            && middle.iter().all(|s| match s {
                FusedSpec::BinPerRow(..)
                | FusedSpec::BinPerCol(..)
                | FusedSpec::BinScalar(..)
                | FusedSpec::LeakyRelu(..) => true,
                // a tensor added to the product (a residual connection), read where it lies
                // and so never where the blocks leave their sums
                FusedSpec::AddUnicast(other) => apart(other, c),
                _ => false,
            })
            && f32_packed(&**a, ker.mr())
            && f32_packed(&**b, ker.nr())
    }

    /// Runs the full tiles of `m × n` (panels) with k cut in blocks of `K_BLOCK_BYTES` of
    /// the A panel, for a product [`Self::k_blocks`] takes. Each row of tiles takes its
    /// panel a block at a time: the block stays in the cache across the row's tiles, and a
    /// kernel that prefetches fetches the next block while it multiplies, as it does the
    /// next panel of a shorter product. A block stores its sums in C, and the next adds them back
    /// (`AddUnicast`) before it goes on, so each output is the same chain of multiply-adds,
    /// the same bits; the last block applies the fused operations before its store.
    /// Returns the tiles it ran; the border ones are left to the plain walk.
    #[cfg(target_arch = "x86_64")]
    pub(crate) unsafe fn run_k_blocked(
        &self,
        ker: &impl MatMatMulKer<Acc = TI>,
        specs: &[FusedSpec],
        tls: &mut TLSScratch,
        m: std::ops::Range<usize>,
        n: std::ops::Range<usize>,
    ) -> TractResult<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        use FusedKerSpec as FKS;
        let [FusedSpec::AddMatMul { a, b, packing }, middle @ .., FusedSpec::Store(c)] = specs
        else {
            bail!("run_k_blocked on a product k_blocks does not take");
        };
        let k = b.k();
        let (mr, nr) = (ker.mr(), ker.nr());
        let prefetching = ker.prefetches_next_a();
        let k_block = (K_BLOCK_BYTES / (mr * 4)).max(1);
        let full_m = m.start..m.end.min(self.valid_down_tiles).max(m.start);
        let full_n = n.start..n.end.min(self.valid_right_tiles).max(n.start);
        unsafe {
            for down in full_m.clone() {
                let pa = a.panel_bytes(down, None)?;
                let pa_end = pa.add(k * mr * 4);
                for k0 in (0..k).step_by(k_block) {
                    let kc = k_block.min(k - k0);
                    let last = k0 + kc == k;
                    let next_block = pa.add((k0 + kc) * mr * 4);
                    for right in full_n.clone() {
                        let store = c.tile_c(down, right);
                        let pb = b.panel_bytes(right, None)?;
                        // this row's next block; the next panel's first one comes in with
                        // the hardware's streamer when the row gets there
                        let part = next_a_part(
                            next_block,
                            (pa_end as usize).saturating_sub(next_block as usize),
                            kc,
                            right - full_n.start,
                        );
                        let mut ops = [FKS::Done; 8];
                        let mut len = 0;
                        let mut push = |op| {
                            ops[len] = op;
                            len += 1;
                        };
                        push(FKS::Clear);
                        if k0 > 0 {
                            push(FKS::AddUnicast(store));
                        }
                        push(FKS::AddMatMul {
                            k: kc,
                            pa: pa.add(k0 * mr * 4),
                            pb: pb.add(k0 * nr * 4),
                            // the bits above the packing's are a prefetch address only
                            // for a kernel that reads them
                            packing: *packing | if prefetching { part } else { 0 },
                        });
                        if last && !middle.is_empty() {
                            // the fused operations as the plain walk gives them this tile:
                            // [Clear, AddMatMul, middle.., Store, Done]
                            self.for_valid_tile(ker, specs, tls, down, right)?;
                            for op in &tls.ker_specs::<TI>()[2..2 + middle.len()] {
                                push(*op);
                            }
                        }
                        push(FKS::Store(store));
                        let err = ker.kernel(&ops);
                        ensure!(err == 0, "Kernel {} returned error {err}", ker.name());
                    }
                }
            }
        }
        Ok((full_m, full_n))
    }

    #[cfg(target_arch = "x86_64")]
    /// The A panel after `down` and its length, where a kernel that prefetches it should:
    /// a full panel of weights packed ahead (no scratch buffer), whose length is at most a
    /// quarter of the L2, so that it fits beside the panel being multiplied. Else null.
    unsafe fn next_a_panel(
        &self,
        a: &dyn super::MMMInputValue,
        down: usize,
        this: *const u8,
    ) -> TractResult<(*const u8, usize)> {
        if down + 1 >= self.valid_down_tiles {
            return Ok((std::ptr::null(), 0));
        }
        let Ok(next) = a.panel_bytes(down + 1, None) else {
            return Ok((std::ptr::null(), 0));
        };
        let len = (next as usize).wrapping_sub(this as usize);
        if next <= this || len > next_a_budget() {
            return Ok((std::ptr::null(), 0));
        }
        Ok((next, len))
    }

    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn for_border_tile(
        &self,
        ker: &impl MatMatMulKer<Acc = TI>,
        specs: &[FusedSpec],
        tls: &mut TLSScratch,
        down: usize,
        right: usize,
        m_remnant: usize,
        n_remnant: usize,
    ) -> TractResult<bool> {
        unsafe {
            use FusedKerSpec as FKS;
            use FusedSpec as FS;
            // sme_mmm_f32_32x32 reads a live-M count from packing bits 8..15
            // and, on the horizontal store, writes that many rows. The count
            // is set only together with a direct store, so the scratch copy
            // is skipped for the same tile. Every other kernel and every
            // short-N or non-contiguous store stays on the scratch path.
            let direct = partial_m_direct(ker, specs, m_remnant, n_remnant);
            for LocDependent { spec, ker_spec: uspec, loc, buffer_a, buffer_b } in
                &self.loc_dependent
            {
                let loc = tls.blob.as_mut_ptr().add(*loc);
                let spec = specs.get_unchecked(*spec);
                let it = match spec {
                    FS::BinPerRow(v, op) => {
                        let buf = std::slice::from_raw_parts_mut(loc as *mut TI, ker.mr());
                        let ptr = if m_remnant < ker.mr() {
                            if m_remnant > 0 {
                                buf.get_unchecked_mut(..m_remnant).copy_from_slice(
                                    v.as_slice_unchecked()
                                        .get_unchecked(down * ker.mr()..)
                                        .get_unchecked(..m_remnant),
                                );
                            }
                            // The kernel computes on the tail lanes before their
                            // results are discarded; garbage there decodes to
                            // denormals and stalls the fp pipeline. Zero them.
                            buf.get_unchecked_mut(m_remnant..)
                                .iter_mut()
                                .for_each(|x| *x = TI::zero());
                            buf.as_ptr()
                        } else {
                            v.as_ptr_unchecked::<TI>().add(down * ker.mr())
                        };
                        match op {
                            BinOp::Min => FKS::PerRowMin(ptr),
                            BinOp::Max => FKS::PerRowMax(ptr),
                            BinOp::Add => FKS::PerRowAdd(ptr),
                            BinOp::Mul => FKS::PerRowMul(ptr),
                            BinOp::Sub => FKS::PerRowSub(ptr),
                            BinOp::SubF => FKS::PerRowSubF(ptr),
                        }
                    }
                    FS::BinPerCol(v, op) => {
                        let buf = std::slice::from_raw_parts_mut(loc as *mut TI, ker.nr());
                        let ptr = if n_remnant < ker.nr() {
                            if n_remnant > 0 {
                                buf.get_unchecked_mut(..n_remnant).copy_from_slice(
                                    v.as_slice_unchecked()
                                        .get_unchecked(right * ker.nr()..)
                                        .get_unchecked(..n_remnant),
                                );
                            }
                            buf.get_unchecked_mut(n_remnant..)
                                .iter_mut()
                                .for_each(|x| *x = TI::zero());
                            buf.as_ptr()
                        } else {
                            v.as_ptr_unchecked::<TI>().add(right * ker.nr())
                        };
                        match op {
                            BinOp::Min => FKS::PerColMin(ptr),
                            BinOp::Max => FKS::PerColMax(ptr),
                            BinOp::Add => FKS::PerColAdd(ptr),
                            BinOp::Mul => FKS::PerColMul(ptr),
                            BinOp::Sub => FKS::PerColSub(ptr),
                            BinOp::SubF => FKS::PerColSubF(ptr),
                        }
                    }
                    FS::AddRowColProducts(rows, cols) => {
                        let r = std::slice::from_raw_parts_mut(loc as *mut TI, ker.mr());
                        let row_ptr = if m_remnant < ker.mr() {
                            r.get_unchecked_mut(..m_remnant).copy_from_slice(
                                rows.as_slice_unchecked()
                                    .get_unchecked(down * ker.mr()..)
                                    .get_unchecked(..m_remnant),
                            );
                            r.get_unchecked_mut(m_remnant..)
                                .iter_mut()
                                .for_each(|x| *x = TI::zero());
                            r.as_ptr()
                        } else {
                            rows.as_ptr_unchecked::<TI>().add(down * ker.mr())
                        };
                        let c = std::slice::from_raw_parts_mut(
                            (loc as *mut TI).add(ker.mr()),
                            ker.nr(),
                        );
                        let col_ptr = if n_remnant < ker.nr() {
                            c.get_unchecked_mut(..n_remnant).copy_from_slice(
                                cols.as_slice_unchecked()
                                    .get_unchecked(right * ker.nr()..)
                                    .get_unchecked(..n_remnant),
                            );
                            c.get_unchecked_mut(n_remnant..)
                                .iter_mut()
                                .for_each(|x| *x = TI::zero());
                            c.as_ptr()
                        } else {
                            cols.as_ptr_unchecked::<TI>().add(right * ker.nr())
                        };
                        FKS::AddRowColProducts(row_ptr, col_ptr)
                    }
                    FS::AddUnicast(store) => {
                        let row_byte_stride = store.row_byte_stride;
                        let col_byte_stride = store.col_byte_stride;
                        let tile_offset = row_byte_stride * down as isize * ker.mr() as isize
                            + col_byte_stride * right as isize * ker.nr() as isize;
                        let tile_ptr = store.ptr.offset(tile_offset);
                        let tmp_d_tile =
                            std::slice::from_raw_parts_mut(loc as *mut TI, ker.mr() * ker.nr());
                        tmp_d_tile.iter_mut().for_each(|t| *t = TI::zero());
                        for r in 0..m_remnant as isize {
                            for c in 0..n_remnant as isize {
                                let inner_offset = c * col_byte_stride + r * row_byte_stride;
                                if inner_offset + tile_offset
                                    < (store.item_size * store.item_count) as isize
                                {
                                    *tmp_d_tile
                                        .get_unchecked_mut(r as usize + c as usize * ker.mr()) =
                                        *(tile_ptr.offset(inner_offset) as *const TI);
                                }
                            }
                        }
                        FKS::AddUnicast(OutputStoreKer {
                            ptr: tmp_d_tile.as_ptr() as _,
                            row_byte_stride: std::mem::size_of::<TI>() as isize,
                            col_byte_stride: (std::mem::size_of::<TI>() * ker.mr()) as isize,
                            item_size: std::mem::size_of::<TI>(),
                        })
                    }
                    FS::Store(c_store) => {
                        if direct {
                            FKS::Store(c_store.tile_c(down, right))
                        } else {
                            let row_major = ker.stores_row_major_tile()
                                && c_store.col_byte_stride == c_store.item_size as isize;
                            let (row_byte_stride, col_byte_stride) = if row_major {
                                // Pad the row stride to 128 bytes so it stays aligned
                                // for the kernel's bulk-store path.
                                let row = Integer::next_multiple_of(
                                    &(c_store.item_size * ker.nr()),
                                    &128,
                                );
                                (row as isize, c_store.item_size as isize)
                            } else {
                                (
                                    c_store.item_size as isize,
                                    (c_store.item_size * ker.mr()) as isize,
                                )
                            };
                            let tmpc = OutputStoreKer {
                                ptr: loc as _,
                                item_size: c_store.item_size,
                                row_byte_stride,
                                col_byte_stride,
                            };
                            FKS::Store(tmpc)
                        }
                    }
                    FS::AddMatMul { a, b, packing } => {
                        let scratch = (loc as *mut AddMatMulTemp).as_mut().unwrap();
                        if scratch.panel_a_id != down {
                            scratch.ptr_a = a.panel_bytes(
                                down,
                                buffer_a.map(|o| tls.blob.as_mut_ptr().add(o)),
                            )?;
                            scratch.panel_a_id = down;
                        }
                        if scratch.panel_b_id != right {
                            scratch.ptr_b = b.panel_bytes(
                                right,
                                buffer_b.map(|o| tls.blob.as_mut_ptr().add(o)),
                            )?;
                            scratch.panel_b_id = right;
                        }
                        let packing = if direct { *packing | (m_remnant << 8) } else { *packing };
                        FKS::AddMatMul { k: b.k(), pa: scratch.ptr_a, pb: scratch.ptr_b, packing }
                    }
                    _ => std::hint::unreachable_unchecked(),
                };
                *tls.ker_specs().get_unchecked_mut(*uspec) = it;
            }
            Ok(direct)
        }
    }

    #[inline]
    pub fn uspecs(&self) -> &[FusedKerSpec<TI>] {
        &self.ker_specs
    }

    unsafe fn postprocess_tile(
        &self,
        specs: &[FusedSpec],
        tls: &mut TLSScratch,
        down: usize,
        right: usize,
        m_remnant: usize,
        n_remnant: usize,
    ) -> TractResult<()>
    where
        TI: LADatum,
    {
        unsafe {
            for LocDependent { spec, ker_spec: uspec, .. } in self.loc_dependent.iter() {
                let spec = specs.get_unchecked(*spec);
                let ker_spec = tls.ker_specs::<TI>().get_unchecked(*uspec);
                if let (FusedSpec::Store(c_store), FusedKerSpec::Store(tmp)) = (spec, ker_spec) {
                    c_store.set_from_tile(down, right, m_remnant, n_remnant, tmp)
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod next_a_part_tests {
    use super::next_a_part;

    /// The tiles of a row ask for consecutive parts of the next panel, k * 16 bytes each,
    /// line-aligned, and for nothing past its end or when there is no next panel.
    #[test]
    fn each_tile_of_a_row_asks_for_its_own_part_of_the_next_panel() {
        let next = 0x10000 as *const u8;
        let (k, len) = (1536, 1536 * 64 * 4);
        assert_eq!(next_a_part(next, len, k, 0), 0x10000);
        assert_eq!(next_a_part(next, len, k, 1), 0x10000 + 1536 * 16);
        assert_eq!(next_a_part(next, len, k, 15), 0x10000 + 15 * 1536 * 16);
        assert_eq!(next_a_part(next, len, k, 16), 0);
        assert_eq!(next_a_part(next, len, 5, 1) % 64, 0);
        assert_eq!(next_a_part(std::ptr::null(), len, k, 0), 0);
    }
}
