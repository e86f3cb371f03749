"""The paper's method: Data-Free Sketch-Based Image Retrieval (Chaudhuri et al., CVPR 2023)."""
