#!/usr/bin/env bash
# Port a nanotron checkout at the pinned commit to the CPU, in place (a throwaway checkout: never the one you train
# with). What it changes, and nothing else:
#   - every "cuda" device string and .cuda() call: the CPU;
#   - initialize_torch_distributed and ParallelContext: gloo instead of NCCL, no CUDA device to set;
#   - the one torch.cuda.current_device() used as a device: the CPU.
# With tools/nanotron_cpu/shim on PYTHONPATH (flash-attn in PyTorch, stand-ins for triton and grouped_gemm), the
# pinned commit's real trainer, model blocks, tensor parallelism, checkpointing and schedules then run on a CPU.
#   bash tools/nanotron_cpu/port.sh /tmp/nanotron
set -euo pipefail
checkout=${1:?usage: port.sh NANOTRON_CHECKOUT}
pinned=$(python -c "import sys; sys.path.insert(0, '$(cd "$(dirname "$0")/../.." && pwd)'); \
from aurora_m.engines.nanotron import PINNED_COMMIT; print(PINNED_COMMIT)")
head=$(git -C "$checkout" rev-parse HEAD)
if [ "$head" != "$pinned" ]; then
    echo "port.sh: $checkout is at $head, not the pinned commit $pinned" >&2
    exit 2
fi
if ! git -C "$checkout" diff --quiet; then
    echo "port.sh: $checkout has changes already (ported before?): use a clean checkout" >&2
    exit 2
fi
cd "$checkout/src/nanotron"
grep -rlE '"cuda"|\.cuda\(\)' --include=*.py . | xargs sed -i -e 's/"cuda"/"cpu"/g' -e "s/\.cuda()/.to('cpu')/g"
sed -i -e 's/backend = "nccl"/backend = "gloo"/' -e 's/^    if torch.cuda.is_available():/    if True:/' \
    -e 's/^        torch.cuda.set_device(torch.cuda.device(device_id))/        pass/' distributed.py
sed -i -e 's/assert backend == "nccl"/assert backend in ("nccl", "gloo")/' parallel/context.py
sed -i -e 's/device=torch.cuda.current_device()/device="cpu"/' parallel/utils.py
git -C "$checkout" diff --stat | tail -1
