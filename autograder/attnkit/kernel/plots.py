"""Heatmaps of attention weights for the notebooks (matplotlib, imported on first use)."""

from __future__ import annotations


def heatmap(matrix, labels, title: str):
    """Draw a (T, T) matrix with token labels, one annotated cell per weight."""
    import matplotlib.pyplot as plt

    values = matrix.detach().cpu().float().numpy() if hasattr(matrix, "detach") else matrix
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=max(1.0, float(values.max())))
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("attended token (key)")
    ax.set_ylabel("query token")
    ax.set_title(title)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if values[i, j] > 0.6 else "white")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    plt.show()
