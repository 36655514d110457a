//! Moving a trained model to another canvas of the same patch size.
//!
//! Nothing in the model depends on the canvas but its learned patch positions, one vector
//! per place on the patch grid (`patch_position`, `[rows, cols, d]`). On a canvas with
//! another grid each new place takes the position of the same place on the old grid,
//! interpolated between its four neighbours (bilinear, the corners of the two grids on each
//! other), so the model starts with positions that say what they said before: a patch
//! near the left edge is still near the left edge. The patch projection, the decoder and
//! the heads are kept as they are; what an object of a given size looks like in patches
//! changes, and training teaches the rest.

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

#[cfg(test)]
mod tests {
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
}
