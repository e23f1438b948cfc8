// Row bookkeeping shared by the attacks that keep [N, d] state on the model's device (CW-L2,
// APGD): index lists uploaded to the device and row copies between device tensors.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/tensor.h"

namespace aegis::attacks {

// rows as an i32 [rows.size()] tensor on dev.
Tensor upload_rows(const std::vector<std::int32_t>& rows, Device dev);

// dst[dst_rows[j], :] = src[src_rows[j], :] for rows of d floats, on the tensors' device.
void copy_rows(const Tensor& src, const std::vector<std::int32_t>& src_rows, const Tensor& dst,
               const std::vector<std::int32_t>& dst_rows, std::int64_t d);

}  // namespace aegis::attacks
