//! Moving a trained model to another canvas, or to another patch size.
//!
//! Nothing in the model depends on the canvas but its learned patch positions, one vector
//! per place on the patch grid (`patch_position`, `[rows, cols, d]`). On a canvas with
//! another grid each new place takes the position of the same place on the old grid,
//! interpolated between its four neighbours (bilinear, the corners of the two grids on each
//! other), so the model starts with positions that say what they said before: a patch
//! near the left edge is still near the left edge. The decoder and the heads are kept as
//! they are; what an object of a given size looks like in patches changes, and training
//! teaches the rest.
//!
//! A new patch size also changes the patch projection (`vision_embed`, one input per
//! pixel and channel of a patch). Each new pixel's weight is the old weights it covers,
//! summed by the share of each old pixel under it (area resampling of the kernel), so a
//! patch of one colour projects exactly as before and a pattern in the new patch is read
//! as the same pattern stretched over the old one.

use anyhow::{Result, ensure};

use super::weights::Array;

/// Where new place `i` of `to` places falls on a grid of `from` places: the two old places
/// either side and the weight of the second.
fn source(i: usize, from: usize, to: usize) -> (usize, usize, f32) {
    if from == 1 {
        return (0, 0, 0.0);
    }
    let x = if to == 1 {
        (from - 1) as f32 / 2.0
    } else {
        i as f32 * (from - 1) as f32 / (to - 1) as f32
    };
    let lo = (x.floor() as usize).min(from - 2);
    (lo, lo + 1, x - lo as f32)
}

/// The `[rows, cols, d]` position table resampled to `[rows_to, cols_to, d]`.
pub fn resample_positions(table: &Array, rows_to: usize, cols_to: usize) -> Result<Array> {
    let &[rows, cols, d] = table.dims.as_slice() else {
        anyhow::bail!(
            "patch_position has shape {:?}; [rows, cols, d] was expected",
            table.dims
        );
    };
    ensure!(
        rows_to > 0 && cols_to > 0 && rows > 0 && cols > 0,
        "patch grids must have at least one row and one column ({rows}x{cols} -> {rows_to}x{cols_to})"
    );
    ensure!(
        table.data.len() == rows * cols * d,
        "patch_position holds {} values, not the {} its shape {:?} needs",
        table.data.len(),
        rows * cols * d,
        table.dims
    );
    let at = |r: usize, c: usize| &table.data[(r * cols + c) * d..(r * cols + c + 1) * d];
    let mut data = Vec::with_capacity(rows_to * cols_to * d);
    for r in 0..rows_to {
        let (r0, r1, fr) = source(r, rows, rows_to);
        for c in 0..cols_to {
            let (c0, c1, fc) = source(c, cols, cols_to);
            let (a, b, e, f) = (at(r0, c0), at(r0, c1), at(r1, c0), at(r1, c1));
            data.extend((0..d).map(|k| {
                // written so that a weight of 0 or 1 gives a neighbour's value exactly
                let top = a[k] * (1.0 - fc) + b[k] * fc;
                let bottom = e[k] * (1.0 - fc) + f[k] * fc;
                top * (1.0 - fr) + bottom * fr
            }));
        }
    }
    Ok(Array {
        dims: vec![rows_to, cols_to, d],
        data,
    })
}

/// How much of old pixel `j` (on `[j, j+1)`) lies under new pixel `i` of a row of `to`
/// pixels laid over `from`: new pixel `i` spans `[i·from/to, (i+1)·from/to)`.
fn overlap(i: usize, j: usize, from: usize, to: usize) -> f32 {
    let r = from as f32 / to as f32;
    let (lo, hi) = (i as f32 * r, (i + 1) as f32 * r);
    (hi.min(j as f32 + 1.0) - lo.max(j as f32)).max(0.0)
}

/// The patch projection's `[p·p·3, d]` weight (rows: pixels row-major, channels last)
/// resampled from patches of `from` pixels to patches of `to`: each new pixel and channel
/// takes the old weights under it, each by the share of the old pixel it covers. The sum
/// over a patch's pixels is kept, channel by channel and unit by unit.
pub fn resample_patch_kernel(weight: &Array, from: usize, to: usize) -> Result<Array> {
    let &[inputs, d] = weight.dims.as_slice() else {
        anyhow::bail!(
            "vision_embed.weight has shape {:?}; [pixels x channels, d] was expected",
            weight.dims
        );
    };
    ensure!(
        from > 0 && to > 0 && inputs == from * from * 3 && weight.data.len() == inputs * d,
        "vision_embed.weight has shape {:?}, which is not a projection of {from}x{from} patches of 3 channels",
        weight.dims
    );
    // the old pixels each new one covers, with their shares, along one side
    let under: Vec<Vec<(usize, f32)>> = (0..to)
        .map(|i| {
            (0..from)
                .map(|j| (j, overlap(i, j, from, to)))
                .filter(|&(_, w)| w > 0.0)
                .collect()
        })
        .collect();
    let mut data = vec![0.0f32; to * to * 3 * d];
    for (y, rows) in under.iter().enumerate() {
        for (x, cols) in under.iter().enumerate() {
            for &(py, wy) in rows {
                for &(px, wx) in cols {
                    let w = wy * wx;
                    for ch in 0..3 {
                        let src = ((py * from + px) * 3 + ch) * d;
                        let dst = ((y * to + x) * 3 + ch) * d;
                        for k in 0..d {
                            data[dst + k] += w * weight.data[src + k];
                        }
                    }
                }
            }
        }
    }
    Ok(Array {
        dims: vec![to * to * 3, d],
        data,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A table whose every channel is a plane over the grid: `k + 10 r - 3 c`, scaled.
    fn plane(rows: usize, cols: usize, d: usize, scale: (f32, f32)) -> Array {
        let mut data = vec![];
        for r in 0..rows {
            for c in 0..cols {
                for k in 0..d {
                    data.push(k as f32 + 10.0 * r as f32 * scale.0 - 3.0 * c as f32 * scale.1);
                }
            }
        }
        Array {
            dims: vec![rows, cols, d],
            data,
        }
    }

    #[test]
    fn the_same_grid_comes_back_unchanged() {
        let t = Array {
            dims: vec![2, 3, 2],
            data: (0..12).map(|v| (v * v) as f32 * 0.37).collect(),
        };
        assert_eq!(resample_positions(&t, 2, 3).unwrap(), t);
    }

    #[test]
    fn a_plane_over_the_grid_stays_the_same_plane() {
        // bilinear interpolation reproduces a linear function exactly: resampled from 6x8
        // to 9x12, place (r, c) of the new grid is place (r·5/8, c·7/11) of the old one
        let from = plane(6, 8, 3, (1.0, 1.0));
        let to = resample_positions(&from, 9, 12).unwrap();
        let want = plane(9, 12, 3, (5.0 / 8.0, 7.0 / 11.0));
        assert_eq!(to.dims, vec![9, 12, 3]);
        for (i, (a, b)) in to.data.iter().zip(&want.data).enumerate() {
            assert!((a - b).abs() < 1e-4, "value {i}: {a} against {b}");
        }
        // and back down again, the corners exactly where they were
        let back = resample_positions(&to, 6, 8).unwrap();
        for (i, (a, b)) in back.data.iter().zip(&from.data).enumerate() {
            assert!((a - b).abs() < 1e-4, "value {i}: {a} against {b}");
        }
        let corner = |t: &Array| t.data[t.data.len() - 3..].to_vec();
        assert_eq!(corner(&to), corner(&from));
    }

    #[test]
    fn a_single_place_takes_the_middle_and_bad_tables_are_refused() {
        let from = plane(3, 5, 1, (1.0, 1.0));
        let one = resample_positions(&from, 1, 1).unwrap();
        // the middle of a 3x5 grid is place (1, 2): 10 - 6
        assert_eq!(one.data, vec![4.0]);
        let err = resample_positions(
            &Array {
                dims: vec![4, 8],
                data: vec![0.0; 32],
            },
            2,
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("patch_position") && err.contains("[4, 8]"),
            "{err}"
        );
        let err = resample_positions(&from, 0, 2).unwrap_err().to_string();
        assert!(err.contains("0x2"), "{err}");
    }

    /// A `[p·p·3, d]` kernel whose value at (pixel y, x, channel c, unit k) is `f(y, x, c, k)`.
    fn kernel(p: usize, d: usize, f: impl Fn(usize, usize, usize, usize) -> f32) -> Array {
        let mut data = vec![];
        for y in 0..p {
            for x in 0..p {
                for c in 0..3 {
                    data.extend((0..d).map(|k| f(y, x, c, k)));
                }
            }
        }
        Array {
            dims: vec![p * p * 3, d],
            data,
        }
    }

    /// The projection of a patch of one colour per channel, unit by unit.
    pub(crate) fn project_flat(k: &Array, colour: [f32; 3]) -> Vec<f32> {
        let d = k.dims[1];
        let mut out = vec![0.0; d];
        for (row, values) in k.data.chunks(d).enumerate() {
            for (o, v) in out.iter_mut().zip(values) {
                *o += v * colour[row % 3];
            }
        }
        out
    }

    #[test]
    fn a_patch_of_one_colour_projects_the_same_at_any_patch_size() {
        let old = kernel(24, 5, |y, x, c, k| {
            ((y * 7 + x * 3 + c * 11 + k * 5) % 17) as f32 * 0.1 - 0.8
        });
        let colour = [0.3, -0.7, 1.1];
        let want = project_flat(&old, colour);
        for to in [16, 12, 9, 30] {
            let new = resample_patch_kernel(&old, 24, to).unwrap();
            assert_eq!(new.dims, vec![to * to * 3, 5]);
            let got = project_flat(&new, colour);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-3, "patch {to}: {got:?} against {want:?}");
            }
        }
        // the same size comes back unchanged
        assert_eq!(resample_patch_kernel(&old, 24, 24).unwrap(), old);
    }

    #[test]
    fn a_kernel_that_reads_one_half_still_reads_that_half() {
        // weights on the left half of the patch only, on channel 1: from 4 pixels to 2,
        // each new left pixel covers four old ones of weight 1
        let old = kernel(4, 1, |_, x, c, _| if x < 2 && c == 1 { 1.0 } else { 0.0 });
        let new = resample_patch_kernel(&old, 4, 2).unwrap();
        // rows: (y, x, channel), 2x2 pixels of 3 channels
        let want = [
            0.0, 4.0, 0.0, 0.0, 0.0, 0.0, //
            0.0, 4.0, 0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(new.data, want);
        // from 2 pixels to 3, the middle new pixel lies half on each old one
        let old = kernel(2, 1, |_, x, c, _| if x == 0 && c == 0 { 9.0 } else { 0.0 });
        let new = resample_patch_kernel(&old, 2, 3).unwrap();
        let at = |y: usize, x: usize| new.data[(y * 3 + x) * 3];
        // each new pixel is 2/3 of an old one on a side: (2/3)^2 of 9 is 4
        assert!((at(0, 0) - 4.0).abs() < 1e-5, "{}", at(0, 0));
        assert!((at(0, 1) - 2.0).abs() < 1e-5, "{}", at(0, 1));
        assert_eq!(at(0, 2), 0.0);
    }

    #[test]
    fn a_kernel_of_another_shape_is_refused() {
        let bad = kernel(4, 2, |_, _, _, _| 1.0);
        let err = resample_patch_kernel(&bad, 5, 3).unwrap_err().to_string();
        assert!(
            err.contains("5x5 patches") && err.contains("[48, 2]"),
            "{err}"
        );
    }
}
