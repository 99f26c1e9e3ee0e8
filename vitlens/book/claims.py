"""The paper's claims that the findings ledger tests, one per ledger row, by key.

Each entry names where the paper makes the claim and, wherever one of its sentences states
it, quotes that sentence verbatim in double quotation marks (arXiv 2108.08810v2, the
NeurIPS 2021 text): ``Section 5, Fig. 3 caption: "..."`` quotes a figure caption,
``Section 6 (Fig. 7): "..."`` the body text on that figure. "..." marks a cut; double
quotation marks inside a quotation are printed as single ones; PDF-extraction artefacts
(ligatures, line-break hyphens, stray spaces) are undone; no word is changed. An entry that
begins *Paraphrase* restates a claim in our words: where the property comes from the papers
the paper cites rather than from the paper (chapter 1), where no sentence of the paper
states what the row tests, or where the row is an extension of the paper; it says where the
paper comes nearest. Chapters never type a claim: :func:`vitlens.book.finding` glues it
from here.

:data:`LABELS` names each claim in a few words after its figure (or section), for the lines
of the ledger's scorecard and the rows' short form; the quotation stays the claim.
"""

from __future__ import annotations

__all__ = ["CLAIMS", "LABELS"]

CLAIMS: dict[str, str] = {
    # chapter 1: the measuring instrument (Section 3, Appendix A and their references)
    "ch1_invariance": 'Section 3: "CKA is invariant to orthogonal transformation of '
    "representations (including permutation of neurons), and the normalization term ensures "
    'invariance to isotropic scaling." (That a stretch of the axes does change CKA, which '
    "the row also tests, is Kornblith et al. 2019's point, not the paper's.)",
    "ch1_debiased": "Paraphrase (no sentence of the paper states it: Section 3 says only "
    'that it uses "the unbiased estimator of HSIC [39] using minibatches", after Song et '
    "al. 2012 and Nguyen et al. 2021): the unbiased HSIC estimator gives independent "
    "features a CKA near zero where the biased one does not.",
    "ch1_minibatch": 'Appendix A: "Experiments varying the exact batch size (down to 128), '
    "and total number of examples used for CKA (down to 2560 total examples, repeated 10 "
    'times), had no noticeable effect on the results."',
    # chapter 2: Section 4
    "ch2_fig1": 'Section 4, Fig. 1 caption: "...ViTs having highly similar representations '
    "throughout the model, while the ResNet models show much lower similarity between lower "
    'and higher layers."',
    "ch2_fig2": 'Section 4, Fig. 2 caption: "We observe that the lower half of ResNet '
    'layers are similar to around the lowest quarter of ViT layers."',
    # chapter 2b: can the heatmap be trusted? (extensions of the paper)
    "ch2b_fig1_measures": "Paraphrase (an extension: Section 4's Fig. 1 statement, quoted in "
    "chapter 2, re-tested under measures beside CKA): the ViT's layers are more alike across "
    "depth than the ResNet's under linear CKA, RBF CKA, orthogonal Procrustes and SVCCA alike.",
    "ch2b_fig2_measures": "Paraphrase (an extension: Section 4's Fig. 2 statement, quoted in "
    "chapter 2, re-tested under measures beside CKA): the ResNet's lower half matches the "
    "ViT's lowest quarter under linear CKA, RBF CKA, orthogonal Procrustes and SVCCA alike.",
    "ch2b_seed": "Paraphrase (an extension of Section 3, which adopts CKA without such a "
    "test; after Ding, Denain & Steinhardt 2021's specificity test): linear CKA finds each "
    "ViT block's counterpart in a second training run of the same network, the same block "
    "more similar than any other.",
    "ch2b_deletion": "Paraphrase (an extension of Section 3, after Ding, Denain & "
    "Steinhardt 2021's sensitivity test): when bands of a layer's principal components are "
    "deleted one at a time, linear CKA moves with what a linear probe loses (a positive rank "
    "correlation of at least 0.5).",
    "ch2b_moved": "Paraphrase (an extension of Section 3, after Davari et al. 2023): moving "
    "2 % of the images' features far along a new direction, which a linear probe can "
    "ignore, leaves linear CKA between the layer and its moved copy within 0.05 of 1.",
    # chapter 3: Section 5
    "ch3_fig3": 'Section 5, Fig. 3 caption: "...the lower layers attend both locally and '
    'globally, while the higher layers attend entirely globally."',
    "ch3_fig4": 'Section 5, Fig. 4 caption: "With less training data, lower attention '
    'layers do not learn to attend locally."',
    "ch3_fig5": 'Section 5, Fig. 5 caption: "We observe that lower ResNet layers are most '
    "similar to the features learned by local attention heads of ViT, and decrease "
    'monotonically in similarity as more global information is incorporated..."',
    "ch3b_fig5_local": "Paraphrase (an extension: Section 5, Fig. 5 tested on a ViT that has "
    "local heads, chapter 3b's study model; the paper's nearest words are "
    "the Fig. 5 caption's \"lower ResNet layers are most similar to the features learned by "
    "local attention heads of ViT\"): the more locally a subset of an early block's heads "
    "attends, the more similar its outputs are to the ResNet's lower layers.",
    "ch3_fig6_size": 'Section 5 (Fig. 6): "We observe that lower layer effective receptive '
    "fields for ViT are indeed larger than in ResNets, and while ResNet effective receptive "
    "fields grow gradually, ViT receptive fields become much more global midway through the "
    'network."',
    "ch3_fig6_centre": 'Section 5 (Fig. 6): "ViT receptive fields also show strong '
    'dependence on their center patch due to their strong residual connections..."',
    # chapter 4: Section 6, Appendix E
    "ch4_fig7_vit_vs_resnet": 'Section 6 (Fig. 7, right): "...skip connection is much more '
    "influential in ViT compared to ResNet: we observe much higher norm ratios for ViT "
    'throughout..."',
    "ch4_fig7_tokens": 'Section 6 (Fig. 7): "...in the first half of the network, the CLS '
    "token (token 0) representation is primarily propagated by the skip connection branch "
    "(high norm ratio), while the spatial token representations have a large contribution "
    "coming from the long branch (lower norm ratio). Strikingly, in the second half of the "
    'network, this is reversed."',
    "ch4_e2_cosine": "Paraphrase (Appendix E, Fig. E.2, which plots the cosines for a ViT "
    "and a ResNet; the nearest words are the Fig. 7 caption's \"Most information in ViT "
    'passes through skip connections"): in ViTs the residual sum z + f(z) keeps the '
    "direction of z more than in ResNets (higher cosine similarity).",
    "ch4_fig8_break": 'Section 6, Fig. 8 caption: "ViT models trained without any skip '
    "connections in block i show very little representation similarity between layers "
    'before/after block i."',
    "ch4_fig8_accuracy": 'Section 6, Fig. 8 caption: "For middle blocks without skip '
    'connections, we observe a performance drop of 4%."',
    # chapter 5: Section 7
    "ch5_fig9_vit_tokens_localized": 'Section 7, Fig. 9 caption: "We observe that ViT '
    "tokens have strongest similarity to their corresponding spatial location in the "
    "image... This demonstrates that spatial information from the input is preserved even "
    'at the final layer of ViT."',
    "ch5_fig9_resnet_cells_localized": 'Section 7, Fig. 9 caption: "Higher layers of ViT '
    'maintain spatial location information more faithfully than ResNets."',
    "ch5_fig10_gap_less_localized": 'Section 7 (Fig. 10): "...global average pooling does '
    'indeed reduce localization in the higher layers."',
    "ch5_fig11_cls_spatial_tokens_less_informative": 'Section 7 (Fig. 11): "...ResNet50 '
    "and ViT with GAP model tokens perform well at higher layers, while in the standard ViT "
    'trained with a CLS token the spatial tokens do poorly..."',
    "ch5_fig11_class_token_beats_spatial_gap": "Paraphrase (Section 7, Fig. 11, whose "
    'caption compares models "evaluated with different ways of aggregating the token '
    'representations"; Appendix F discusses the curves): in the class-token ViT, the class '
    "token is a better representation at the top than the average of the spatial tokens.",
    # chapter 6: Section 8
    "ch6_fig12": 'Section 8 (Fig. 12): "Even with 3% of the entire dataset, lower layer '
    "representations are very similar to the model trained on the whole dataset, but higher "
    'layers require larger amounts of pretraining data..." (the caption says "even with '
    '10% of the data").',
    "ch6_fig13_data": 'Section 8 (Fig. 13, left): "...for larger models, the larger dataset '
    'is especially helpful in learning high quality intermediate representations."',
    "ch6_fig13_size": 'Section 8 (Fig. 13, right): "We again see the larger ViT models learn '
    'much stronger intermediate representations than the ResNets."',
    # chapter 7: Appendix H
    "ch7_within_uniform": 'Appendix H (Fig. H.1): "The representations seem to also fall '
    "very clearly into distinct, uncorrelated blocks, with a smaller block in the beginning "
    'and a larger block afterwards."',
    "ch7_closer_to_vit": 'Appendix H (Fig. H.2): "...overall, the models behave more '
    'similar to ViT than ResNets (c.f. Fig. 1 and 2)."',
    "ch7_resnet_lower_half": "Paraphrase (an extension: the paper's nearest words are "
    "Appendix H's \"the models behave more similar to ViT than ResNets (c.f. Fig. 1 and "
    "2)\"): as with the ViT in Fig. 2, the ResNet's lower half is most similar to the "
    "Mixer's lowest layers, below the diagonal of a plain depth-for-depth mapping.",
    # chapter 8: the appendices (C, D, F, G)
    "ch8_c6_sizes": "Appendix C, Fig. C.6 caption (ViT-H/14; Fig. C.5 shows ViT-B/32): "
    '"...observing that the lower layers attend both locally and globally, while the higher '
    'layers attend entirely globally."',
    "ch8_c4_pre_post": 'Appendix C (Fig. C.4): "...the pre-residual receptive fields of later '
    "attention sublayers are not dominated by the center patch, in contrast to the "
    'post-residual receptive fields shown in Figure C.1."',
    "ch8_d4_resnet_tokens": 'Appendix F (on Fig. 11, right, the per-token probes): "...in '
    "ResNet the probes perform poorly in the early layers, but get much better towards the "
    'end of the model."',
    "ch8_fig11_native": 'Appendix F (Fig. 11, left): "First, CLS and GAP models evaluated '
    "with their 'native' representation aggregation approach – first token for CLS and GAP "
    'for GAP – perform very similarly."',
    "ch8_fig11_gap_first_token": 'Appendix F (Fig. 11, left): "...linear probes trained on '
    "the first token of a model trained with a GAP classifier perform very poorly for the "
    "earlier layers, but substantially improve in the latter layers and almost match the "
    'performance of the standard GAP evaluation in the last layer."',
    "ch8_appF_transfer": 'Section 8 (Fig. 13, right): "We again see the larger ViT models '
    'learn much stronger intermediate representations than the ResNets." Appendix F, Fig. '
    'F.2 caption, repeats it on tasks the models were not trained on: "Additional results on '
    'comparison of ViT and ResNet models (Fig. 13 right) on CIFAR-10/100 datasets."',
    "ch8_appG_early_preserved": 'Appendix G: "In all cases, it seems like the first four to '
    'five layers remain very well preserved, even accross model sizes."',
    "ch8_appG_task": 'Appendix G: "For tasks like ImageNet or Cifar100 which are very '
    "similar to the natural images setting of JFT300M, the representation does not change "
    "too much. For medical data (Diabethic Retinopathy detection) or satellite data "
    '(RESISC45), the changes are more pronounced."',
}

LABELS: dict[str, str] = {
    "ch1_invariance": "Sec. 3: CKA's invariances",
    "ch1_debiased": "Sec. 3: unbiased HSIC, independent ones near 0",
    "ch1_minibatch": "App. A: batch size has no effect",
    "ch2_fig1": "Fig. 1: ViT more uniform than ResNet",
    "ch2_fig2": "Fig. 2: ResNet lower half, ViT lowest quarter",
    "ch2b_fig1_measures": "Fig. 1, any measure: ViT more uniform",
    "ch2b_fig2_measures": "Fig. 2, any measure: lower half, lowest quarter",
    "ch2b_seed": "Sec. 3 (ext.): CKA finds a block across seeds",
    "ch2b_deletion": "Sec. 3 (ext.): CKA tracks what a probe loses",
    "ch2b_moved": "Sec. 3 (ext.): CKA robust to a few moved points",
    "ch3_fig3": "Fig. 3: local and global below, global above",
    "ch3_fig4": "Fig. 4: less data, less local attention",
    "ch3_fig5": "Fig. 5: local heads closest to ResNet",
    "ch3b_fig5_local": "Fig. 5 (ext.): a ViT with local heads",
    "ch3_fig6_size": "Fig. 6: ViT fields larger, global midway",
    "ch3_fig6_centre": "Fig. 6: ViT fields hang on the centre patch",
    "ch4_fig7_vit_vs_resnet": "Fig. 7: skips matter more in ViT",
    "ch4_fig7_tokens": "Fig. 7: class and spatial tokens swap",
    "ch4_e2_cosine": "Fig. E.2: z + f(z) keeps z's direction",
    "ch4_fig8_break": "Fig. 8: no skips, no similarity across",
    "ch4_fig8_accuracy": "Fig. 8: no middle skips, lower accuracy",
    "ch5_fig9_vit_tokens_localized": "Fig. 9: ViT tokens stay localized",
    "ch5_fig9_resnet_cells_localized": "Fig. 9: ViT localizes more than ResNet",
    "ch5_fig10_gap_less_localized": "Fig. 10: GAP reduces localization",
    "ch5_fig11_cls_spatial_tokens_less_informative": "Fig. 11: class-token ViT's tokens poor",
    "ch5_fig11_class_token_beats_spatial_gap": "Fig. 11: class token beats token average",
    "ch6_fig12": "Fig. 12: little data keeps lower layers",
    "ch6_fig13_data": "Fig. 13: more data, stronger middle layers",
    "ch6_fig13_size": "Fig. 13: larger ViT, stronger middle layers",
    "ch7_within_uniform": "Fig. H.1: Mixer in two uniform blocks",
    "ch7_closer_to_vit": "Fig. H.2: Mixer closer to ViT than ResNet",
    "ch7_resnet_lower_half": "Fig. H.2 (ext.): ResNet lower half, Mixer lowest",
    "ch8_c6_sizes": "Fig. C.6: local and global below, other sizes",
    "ch8_c4_pre_post": "Fig. C.4: pre-residual fields not centred",
    "ch8_d4_resnet_tokens": "Fig. 11: ResNet token probes improve late",
    "ch8_fig11_native": "Fig. 11: class token and GAP alike, natively",
    "ch8_fig11_gap_first_token": "Fig. 11: GAP's first token poor, then catches up",
    "ch8_appF_transfer": "Fig. F.2: stronger middle layers, new tasks",
    "ch8_appG_early_preserved": "App. G: first layers kept in fine-tuning",
    "ch8_appG_task": "App. G: far tasks change the model more",
}
"""Each claim of ``CLAIMS`` in a few words (at most 48 characters), after its figure, for
the scorecard's line labels and the ledger rows' short form."""
