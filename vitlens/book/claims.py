"""The paper's claims that the findings ledger tests, one per ledger row, by key.

Each entry names the paper's section and figure. Text in quotation marks is the paper's
own wording; text marked *paraphrase* restates the paper's claim in our words where we do
not quote it. Chapters never type a claim: :func:`vitlens.book.finding` glues it from here.
"""

from __future__ import annotations

__all__ = ["CLAIMS"]

CLAIMS: dict[str, str] = {
    # chapter 1: the measuring instrument (Section 3 and its references)
    "ch1_invariance": "Paraphrase (Section 3, after Kornblith et al. 2019): linear CKA is "
    "invariant to orthogonal transformations and isotropic scaling of the features, not to "
    "arbitrary invertible linear maps.",
    "ch1_debiased": "Paraphrase (Section 3, after Nguyen et al. 2021): the unbiased HSIC "
    "estimator gives independent features a CKA near zero where the biased one does not.",
    "ch1_minibatch": "Paraphrase (Section 3): minibatch CKA, unbiased HSIC averaged over "
    "batches, gives a stable estimate on a few thousand images.",
    # chapter 2: Section 4
    "ch2_fig1": "Paraphrase (Section 4, Fig. 1): ViTs have a much more uniform "
    "representation structure across layers than ResNets, whose lower and higher layers "
    "form distinct stages.",
    "ch2_fig2": "Paraphrase (Section 4, Figs 2, B.1): the lower half of the ResNet's layers "
    "is most similar to about the lowest quarter of the ViT's layers, so the ViT's matches "
    "sit below the diagonal of a plain depth-for-depth mapping.",
    # chapter 3: Section 5
    "ch3_fig3": "Paraphrase (Section 5, Fig. 3): in the lower layers some heads attend "
    "locally and some globally; in the higher layers all heads attend globally.",
    "ch3_fig4": "Paraphrase (Section 5, Fig. 4): ViTs trained on less data (ImageNet rather "
    "than JFT-300M) do not learn to attend locally in their lower layers.",
    "ch3_fig5": "Paraphrase (Section 5, Fig. 5): the more locally a subset of an early "
    "block's heads attends, the more similar its outputs are to the ResNet's lower layers.",
    "ch3b_fig5_local": "Paraphrase (Section 5, Fig. 5), tested on a ViT that has local "
    "heads (an extension: the zoo's supervised ViTs have none): the more locally a subset of "
    "an early block's heads attends, the more similar its outputs are to the ResNet's lower "
    "layers.",
    "ch3_fig6_size": "Paraphrase (Section 5, Fig. 6): ViT receptive fields are larger than "
    "ResNet ones from the lowest layers on, and become global midway through the network.",
    "ch3_fig6_centre": "Paraphrase (Section 5, Fig. 6): after the residual connection the "
    "ViT's receptive field depends strongly on the centre patch.",
    # chapter 4: Section 6, Appendix E
    "ch4_fig7_vit_vs_resnet": "Paraphrase (Section 6, Fig. 7): skip connections are more "
    "influential in ViTs than in ResNets: the norm ratio of skip to long branch is higher.",
    "ch4_fig7_tokens": "Paraphrase (Section 6, Fig. 7): in the lower half of the network "
    "the class token is carried mostly by the skip connection (high ratio) while the "
    "spatial tokens are changed more; in the upper half this reverses.",
    "ch4_e2_cosine": "Paraphrase (Appendix E, Fig. E.2): in ViTs the residual sum z + f(z) "
    "keeps the direction of z more than in ResNets (higher cosine similarity).",
    "ch4_fig8_break": "Paraphrase (Section 6, Fig. 8): removing the skip connections of one "
    "block breaks the uniform representation structure at that block.",
    "ch4_fig8_accuracy": "Paraphrase (Section 6, Fig. 8): a ViT trained without one "
    "block's skip connections performs worse.",
    # chapter 5: Section 7
    "ch5_fig9_vit_tokens_localized": "Paraphrase (Section 7, Fig. 9): the class-token "
    "ViT's tokens in the higher layers are still most similar to their own input patch.",
    "ch5_fig9_resnet_cells_localized": "Paraphrase (Section 7, Fig. 9): the ResNet's "
    "higher-layer cells are less localized to their input patch than the ViT's tokens.",
    "ch5_fig10_gap_less_localized": "Paraphrase (Section 7, Fig. 10): a ViT trained with "
    "global average pooling instead of a class token localizes worse in its higher layers.",
    "ch5_fig11_cls_spatial_tokens_less_informative": "Paraphrase (Section 7, Fig. 11): in "
    "the class-token ViT single spatial tokens of the higher layers carry little class "
    "information, less than those of the GAP ViT.",
    "ch5_fig11_class_token_beats_spatial_gap": "Paraphrase (Section 7, Fig. 11): in the "
    "class-token ViT, the class token is a better representation at the top than the "
    "average of the spatial tokens.",
    # chapter 6: Section 8
    "ch6_fig12": "Paraphrase (Section 8, Fig. 12): with less pre-training data the higher "
    "layers' representations differ from the full-data model's more than the lower layers'.",
    "ch6_fig13_data": "Paraphrase (Section 8, Fig. 13): more pre-training data gives better "
    "intermediate representations (higher linear-probe accuracy).",
    "ch6_fig13_size": "Paraphrase (Section 8, Fig. 13): larger ViTs give better "
    "intermediate representations (higher linear-probe accuracy across depth).",
    # chapter 7: Appendix H
    "ch7_within_uniform": "Appendix H: the Mixer's representations \"fall very clearly into "
    "distinct, uncorrelated blocks, with a smaller block in the beginning and a larger "
    'block afterwards".',
    "ch7_closer_to_vit": "Appendix H: the Mixer's representations \"behave more similar to "
    'ViT than ResNets".',
    "ch7_resnet_lower_half": "Paraphrase (Appendix H): as with the ViT, the ResNet's lower "
    "half is most similar to the Mixer's lowest layers, below the diagonal of a plain "
    "depth-for-depth mapping.",
}
