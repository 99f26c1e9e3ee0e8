"""Pure tensor maths: CKA and HSIC estimators, ridge regression. No models, no hooks."""
